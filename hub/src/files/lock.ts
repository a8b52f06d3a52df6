/**
 * Serializes asynchronous operations by key: the operations on one file (its hash) run one after
 * another, in the order they were asked for; operations on different files run side by side.
 */
export class KeyedLock {
  /** The last operation queued per key, settled (never rejecting): what the next one waits for. */
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every operation queued before it on `key` has ended (however it ended). */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with an operation queued or running. */
  get size(): number {
    return this.tails.size;
  }
}
