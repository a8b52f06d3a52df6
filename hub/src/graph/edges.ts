import { grown, nextCapacity } from './grow.js';

/** No edge: the end of a list. */
export const NO_EDGE = -1;
const FIRST_CAPACITY = 64;

/**
 * A list of integers per owner (a task's dependents, by task id), as edges linked in typed arrays:
 * 8 bytes an edge and 8 an owner, where an array a task cost 48 bytes and 8 an item, each an
 * object the collector walks. Items keep the order they were added in. Freed edges are used
 * again. Pure memory, no I/O.
 *
 *     for (let e = lists.first(owner); e !== NO_EDGE; e = lists.next(e)) use(lists.item(e));
 */
export class IdLists {
  /** Each owner's first and last edge (NO_EDGE: an empty list). */
  private head: Int32Array<ArrayBuffer> = new Int32Array(0);
  private tail: Int32Array<ArrayBuffer> = new Int32Array(0);
  /** Each edge's item, and the edge after it (for a free edge: the next free one). */
  private items: Int32Array<ArrayBuffer> = new Int32Array(0);
  private nextEdge: Int32Array<ArrayBuffer> = new Int32Array(0);
  private edgesUsed = 0;
  private freeEdge = NO_EDGE;
  private liveEdges = 0;

  /** Edges in use (for tests and memory figures). */
  get size(): number {
    return this.liveEdges;
  }

  first(owner: number): number {
    return owner < this.head.length ? (this.head[owner] as number) : NO_EDGE;
  }

  next(edge: number): number {
    return this.nextEdge[edge] as number;
  }

  item(edge: number): number {
    return this.items[edge] as number;
  }

  /** Adds `item` at the end of `owner`'s list. */
  append(owner: number, item: number): void {
    this.cover(owner);
    const edge = this.newEdge();
    this.items[edge] = item;
    this.nextEdge[edge] = NO_EDGE;
    const last = this.tail[owner] as number;
    if (last === NO_EDGE) this.head[owner] = edge;
    else this.nextEdge[last] = edge;
    this.tail[owner] = edge;
  }

  /** Removes the first `item` from `owner`'s list (nothing if it holds none). */
  remove(owner: number, item: number): void {
    this.removeWhere(owner, (x) => x === item, true);
  }

  /** Removes every item of `owner`'s list that `drop` accepts (only the first, with `once`). */
  removeWhere(owner: number, drop: (item: number) => boolean, once = false): void {
    let previous = NO_EDGE;
    for (let edge = this.first(owner); edge !== NO_EDGE; ) {
      const following = this.nextEdge[edge] as number;
      if (drop(this.items[edge] as number)) {
        if (previous === NO_EDGE) this.head[owner] = following;
        else this.nextEdge[previous] = following;
        if (this.tail[owner] === edge) this.tail[owner] = previous;
        this.freeOne(edge);
        if (once) return;
      } else {
        previous = edge;
      }
      edge = following;
    }
  }

  /** Empties `owner`'s list. */
  clear(owner: number): void {
    for (let edge = this.first(owner); edge !== NO_EDGE; ) {
      const following = this.nextEdge[edge] as number;
      this.freeOne(edge);
      edge = following;
    }
    if (owner < this.head.length) {
      this.head[owner] = NO_EDGE;
      this.tail[owner] = NO_EDGE;
    }
  }

  /** `from`'s list becomes `to`'s (which must be empty); `from`'s is empty after. */
  move(from: number, to: number): void {
    this.cover(Math.max(from, to));
    this.head[to] = this.head[from] as number;
    this.tail[to] = this.tail[from] as number;
    this.head[from] = NO_EDGE;
    this.tail[from] = NO_EDGE;
  }

  /** `owner`'s list as an array (for the paths that are not hot). */
  toArray(owner: number): number[] {
    const out: number[] = [];
    for (let edge = this.first(owner); edge !== NO_EDGE; edge = this.nextEdge[edge] as number) out.push(this.items[edge] as number);
    return out;
  }

  /** How many items `owner`'s list holds: O(items). */
  count(owner: number): number {
    let n = 0;
    for (let edge = this.first(owner); edge !== NO_EDGE; edge = this.nextEdge[edge] as number) n++;
    return n;
  }

  private freeOne(edge: number): void {
    this.nextEdge[edge] = this.freeEdge;
    this.freeEdge = edge;
    this.liveEdges--;
  }

  private newEdge(): number {
    this.liveEdges++;
    if (this.freeEdge !== NO_EDGE) {
      const edge = this.freeEdge;
      this.freeEdge = this.nextEdge[edge] as number;
      return edge;
    }
    if (this.edgesUsed === this.items.length) {
      const capacity = nextCapacity(this.items.length, FIRST_CAPACITY);
      this.items = grown(this.items, new Int32Array(capacity));
      this.nextEdge = grown(this.nextEdge, new Int32Array(capacity));
    }
    return this.edgesUsed++;
  }

  /** Room for owners up to `owner`, their lists empty. */
  private cover(owner: number): void {
    if (owner < this.head.length) return;
    let capacity = this.head.length;
    while (capacity <= owner) capacity = nextCapacity(capacity, FIRST_CAPACITY);
    const owners = this.head.length;
    this.head = grown(this.head, new Int32Array(capacity));
    this.tail = grown(this.tail, new Int32Array(capacity));
    this.head.fill(NO_EDGE, owners);
    this.tail.fill(NO_EDGE, owners);
  }
}
