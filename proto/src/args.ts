/**
 * Parsers of values given on command lines and in task files, shared by dhub, dquery and dworker.
 * The `...Arg` functions are commander option parsers (they throw InvalidArgumentError, which
 * commander reports naming the option); the others throw RangeError with a message for humans.
 *
 * A number headed for the wire is checked against its field's type here: protobuf writes an
 * out-of-range value modulo 2^32 without a word, so `--attempts 4294967297` would arrive as 1.
 */
import { InvalidArgumentError } from 'commander';
import { MAX_POOL_RUNNING } from './types.js';

/** The ranges of the .proto's 32-bit integer types. */
export const INT32_MIN = -(2 ** 31);
export const INT32_MAX = 2 ** 31 - 1;
export const UINT32_MAX = 2 ** 32 - 1;

const UNITS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;
type Unit = keyof typeof UNITS;
const UNIT_ORDER: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];
const DURATION_EXAMPLES = '90 (seconds), 90s, 500ms, 10m, 2h, 1d2h, 3h50m, 01:30:00, 1-00:00:00';

function notADuration(value: string): RangeError {
  return new RangeError(`"${value}" is not a duration (examples: ${DURATION_EXAMPLES})`);
}

function positiveMs(ms: number, value: string | number): number {
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) throw new RangeError(`duration "${value}" is too long`);
  const rounded = Math.round(ms);
  if (!(rounded > 0)) throw new RangeError(`duration "${value}" must be positive`);
  return rounded;
}

/** `[D-]H:MM:SS` (as sbatch --time writes it) in ms, or undefined when `text` is not of that form. */
function clockDuration(text: string, value: string): number | undefined {
  const m = /^(?:(\d+)-)?(\d+):(\d\d):(\d\d)$/.exec(text);
  if (m === null) return undefined;
  const [days, hours, minutes, seconds] = [m[1] ?? '0', m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  if (minutes > 59 || seconds > 59) throw notADuration(value);
  return ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000;
}

/**
 * A duration in ms. A number, or a string of digits alone, is seconds (`90`, `1.5`). Otherwise one
 * or more NUMBER UNIT parts, units d, h, m, s, ms, largest first and each once (`1d2h`, `3h50m`,
 * `2s500ms`, spaces allowed between parts), or `[D-]H:MM:SS`. Must round to at least 1 ms.
 * Throws RangeError saying what is wrong; how long is too long is the caller's to say.
 */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return positiveMs(value * 1000, value);
  const text = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(text)) return positiveMs(Number(text) * 1000, value);
  const clock = clockDuration(text, value);
  if (clock !== undefined) return positiveMs(clock, value);
  const part = /(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)\s*/y;
  let ms = 0;
  let next = 0; // index in UNIT_ORDER of the smallest unit seen so far, plus one
  while (part.lastIndex < text.length) {
    const at = part.lastIndex;
    const m = part.exec(text);
    if (m === null || m.index !== at) throw notADuration(value);
    const unit = m[2] as Unit;
    const rank = UNIT_ORDER.indexOf(unit);
    if (rank < next) throw notADuration(value); // repeated, or out of order: "1m1h" is likely a typo
    next = rank + 1;
    ms += Number(m[1]) * UNITS[unit];
  }
  if (next === 0) throw notADuration(value);
  return positiveMs(ms, value);
}

/** `n` if it is an integer from `min` to `max`; throws RangeError naming the range otherwise. */
export function checkRange(n: number, min: number, max: number, what = String(n)): number {
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`${what} is out of range: expected an integer from ${min} to ${max}`);
  return n;
}

/** Plain decimal digits with an optional sign; "1e3", "0x10", "" and " " are not integers here. */
function parseInteger(value: string): number {
  if (!/^[+-]?\d+$/.test(value)) throw new InvalidArgumentError('expected an integer');
  return Number(value);
}

function rangeArg(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = parseInteger(value);
    try {
      return checkRange(n, min, max, value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** Any integer a double holds exactly. */
export const integerArg = rangeArg(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
/** 1 and up, for values that never reach the wire as 32-bit fields (byte limits, concurrency). */
export const positiveArg = rangeArg(1, Number.MAX_SAFE_INTEGER);
/** An int32 field (a task's priority). */
export const int32Arg = rangeArg(INT32_MIN, INT32_MAX);
/** A uint32 field where 0 means something (a steal's wait in ms). */
export const uint32Arg = rangeArg(0, UINT32_MAX);
/** A uint32 field that counts (attempts, tasks in a steal): 1 and up. */
export const countArg = rangeArg(1, UINT32_MAX);
/** A timer's length in ms: Node's timers hold at most 2^31 - 1 (about 24.8 days). */
export const timerMsArg = rangeArg(1, 2 ** 31 - 1);
/** A pool's max_running: 0 (no limit) to MAX_POOL_RUNNING. */
export const poolLimitArg = rangeArg(0, MAX_POOL_RUNNING);

export function durationArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** A lease: a duration whose ms fit the wire's uint32 `lease_ms` (the hub then checks its own maximum). */
export function checkLeaseMs(ms: number, value: string | number): number {
  if (ms > UINT32_MAX) {
    throw new RangeError(`${value} is ${ms} ms, over the longest lease the wire carries (${UINT32_MAX} ms, about 49 days)`);
  }
  return ms;
}

export function leaseArg(value: string): number {
  try {
    return checkLeaseMs(parseDuration(value), value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/**
 * A ZeroMQ endpoint a client connects to (`bind`: one a hub binds, where the port may be `*`):
 * tcp://HOST:PORT, ipc://PATH or inproc://NAME. Anything else is refused with the form it should
 * take, so that `127.0.0.1:6125` or `localhost` get a hint rather than an error from deep inside ZeroMQ.
 */
export function parseEndpoint(value: string, bind = false): string {
  const text = value.trim();
  const tcp = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):(\d+|\*)$/.exec(text);
  if (tcp !== null) {
    const port = tcp[2] as string;
    if (port === '*' ? !bind : !(Number(port) >= 1 && Number(port) <= 65_535)) {
      throw new RangeError(`"${value}": the port must be a number from 1 to 65535${bind ? ' (or * for any free port)' : ''}`);
    }
    return text;
  }
  if (/^(ipc|inproc):\/\/\S+$/.test(text)) return text;
  const host = /^(?:[a-z]+:\/\/)?([^:/\s]+)(?::(\d+))?\/?$/.exec(text);
  const example = host === null ? 'tcp://127.0.0.1:6125' : `tcp://${host[1]}:${host[2] ?? '6125'}`;
  throw new RangeError(`"${value}" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. ${example}`);
}

/** The most endpoints one hub may be given as (one active, the others standbys). */
export const MAX_HUB_ENDPOINTS = 16;

/**
 * A hub's endpoints: one, or several separated by commas (`tcp://a:6125,tcp://b:6125`: one hub
 * active, the others standbys). Each is checked as parseEndpoint does; the message of a bad one
 * names it and its place in the list. Throws RangeError.
 */
export function parseHubEndpoints(value: string): string[] {
  const parts = value.split(',').map((part) => part.trim());
  if (parts.length > MAX_HUB_ENDPOINTS) throw new RangeError(`"${value}" lists ${parts.length} endpoints: at most ${MAX_HUB_ENDPOINTS}`);
  const endpoints: string[] = [];
  for (const [i, part] of parts.entries()) {
    const where = parts.length === 1 ? '' : `endpoint ${i + 1} of ${parts.length}: `;
    if (part === '') throw new RangeError(`${where}empty in "${value}": write endpoints separated by single commas, e.g. tcp://hub-a:6125,tcp://hub-b:6125`);
    let endpoint: string;
    try {
      endpoint = parseEndpoint(part);
    } catch (err) {
      throw new RangeError(`${where}${(err as Error).message}`);
    }
    if (endpoints.includes(endpoint)) throw new RangeError(`${where}"${endpoint}" is listed twice`);
    endpoints.push(endpoint);
  }
  return endpoints;
}

/** commander's parser of --hub: the endpoints, checked, joined again by commas. */
export function hubArg(value: string): string {
  try {
    return parseHubEndpoints(value).join(',');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function endpointArg(value: string): string {
  try {
    return parseEndpoint(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function bindArg(value: string): string {
  try {
    return parseEndpoint(value, true);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
