/** A typed array the graph's tables keep; `to`, a longer one, gets its items (the rest stays 0). */
export function grown<T extends Uint8Array | Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** The next capacity of a table of `capacity` items: half again, not twice, so a large one's slack is a third of it at most. */
export function nextCapacity(capacity: number, first: number): number {
  return Math.max(first, Math.ceil(capacity * 1.5));
}
