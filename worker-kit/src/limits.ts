/**
 * The hub's limits as a worker uses them, and the split of finished work into requests that fit.
 * Pure: no sockets, no clock.
 */
import { defaultLimits } from '../../proto/src/spec.js';
import type { Completion, Limits } from '../../proto/src/types.js';

/** The limits a worker sizes its requests by. */
export interface HubLimits {
  /** Largest request frame, bytes. */
  maxMessageBytes: number;
  /** Most tasks named in one complete, heartbeat or release. */
  maxBatch: number;
  /** Most tasks one steal may ask for. */
  maxSteal: number;
  /** Largest result, bytes. */
  maxResultBytes: number;
}

/**
 * What a hub started without options allows (dhub's defaults), for a hub that does not say: its
 * status failed, or a field is 0 (a hub older than StatusReply.limits).
 */
export const FALLBACK_LIMITS: Readonly<HubLimits> = (({ maxMessageBytes, maxBatch, maxSteal, maxResultBytes }) => ({ maxMessageBytes, maxBatch, maxSteal, maxResultBytes }))(
  defaultLimits(),
);

/** The limits to use: each reported one that is set, else the fallback. */
export function effectiveLimits(reported: Partial<Limits> | undefined): HubLimits {
  const pick = (key: keyof HubLimits): number => {
    const value = reported?.[key];
    return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : FALLBACK_LIMITS[key];
  };
  return { maxMessageBytes: pick('maxMessageBytes'), maxBatch: pick('maxBatch'), maxSteal: pick('maxSteal'), maxResultBytes: pick('maxResultBytes') };
}

/**
 * Most bytes of completions per request: half the hub's message limit (the rest is headroom for the
 * request's framing, its `next` steal and our estimate's slack), and at most 16 MiB, so that each
 * round trip stays short: the next steal rides with it, and a lost reply costs little to resend.
 */
export function completionBudget(limits: HubLimits): number {
  return Math.max(1, Math.min(Math.floor(limits.maxMessageBytes / 2), 16 << 20));
}

/** An upper bound of the bytes a completion adds to a request: name, result, output files, tags and lengths. */
export function completionBytes(c: Completion): number {
  let bytes = Buffer.byteLength(c.name, 'utf8') + (c.result?.length ?? 0) + 24;
  for (const o of c.outputs ?? []) bytes += Buffer.byteLength(o.name, 'utf8') + 64 + 32;
  return bytes;
}

/**
 * What a completion counts against `max_batch`: itself and each of its output files (as a
 * create's tasks count with their params, inputs, outputs and param files: see the .proto).
 */
export function completionItems(c: Completion): number {
  return 1 + (c.outputs?.length ?? 0);
}

/**
 * How many completions from the front of `queue` go in the next request: at least one (a lone
 * completion over the budget goes alone, and the client refuses it if it is over the hub's
 * message limit), at most `maxBatch` items (completions and their output files), and no more bytes
 * than the budget.
 */
export function nextBatchSize(queue: readonly Completion[], limits: HubLimits): number {
  const budget = completionBudget(limits);
  let bytes = 0;
  let items = 0;
  let count = 0;
  for (const c of queue) {
    items += completionItems(c);
    if (count > 0 && items > limits.maxBatch) break;
    bytes += completionBytes(c);
    if (count > 0 && bytes > budget) break;
    count++;
  }
  return count;
}

/** `items` in chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += Math.max(1, size)) out.push(items.slice(i, i + Math.max(1, size)));
  return out;
}
