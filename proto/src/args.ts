/** Parsers of command-line values shared by dhub, dquery and dworker (commander option parsers). */
import { InvalidArgumentError } from 'commander';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "90" or "90s" → 90,000 ms; also ms, m and h; a number is seconds. Throws on anything else. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!(value > 0) || !Number.isFinite(value)) throw new Error(`duration ${value} must be a positive number of seconds`);
    return Math.round(value * 1000);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (match === null) throw new Error(`"${value}" is not a duration (examples: 90, 90s, 500ms, 10m, 2h)`);
  const ms = Math.round(Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000));
  if (ms <= 0) throw new Error(`duration "${value}" must be positive`);
  return ms;
}

export function integerArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected an integer');
  return n;
}

export function positiveArg(value: string): number {
  const n = integerArg(value);
  if (n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function durationArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
