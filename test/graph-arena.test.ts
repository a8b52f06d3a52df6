import { describe, expect, it } from 'vitest';
import { ByteArena, EMPTY_HANDLE } from '../hub/src/graph/arena.js';

/** `n` bytes, each from `seed` and its position, so that values differ. */
function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

/** Byte-for-byte equality (toEqual compares element by element: minutes for 40 MiB). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

describe('ByteArena', () => {
  it('gives empty bytes the empty handle, without a slot or a chunk', () => {
    const arena = new ByteArena();
    expect(arena.put(new Uint8Array(0))).toBe(EMPTY_HANDLE);
    expect(arena.get(EMPTY_HANDLE)).toEqual(new Uint8Array(0));
    expect(arena.length(EMPTY_HANDLE)).toBe(0);
    arena.free(EMPTY_HANDLE);
    expect(arena.chunkCount).toBe(0);
    expect(arena.bytes).toBe(0);
  });

  it('copies what it is given: changing the source afterwards changes nothing', () => {
    const arena = new ByteArena();
    const source = bytesOf(100, 1);
    const handle = arena.put(source);
    source.fill(0);
    expect(same(arena.get(handle), bytesOf(100, 1))).toBe(true);
    expect(arena.length(handle)).toBe(100);
  });

  it('keeps values apart across chunk boundaries, large values in chunks of their own', () => {
    const arena = new ByteArena();
    const sizes = [1, 1000, 300_000, 5, 70_000, 2_000_000, 0, 123_457];
    const handles: number[] = [];
    // About 40 MiB in all: many 1 MiB chunks filled, values never split across two.
    for (let i = 0; i < 120; i++) handles.push(arena.put(bytesOf(sizes[i % sizes.length] as number, i)));
    for (let i = 0; i < 120; i++) expect(same(arena.get(handles[i] as number), bytesOf(sizes[i % sizes.length] as number, i))).toBe(true);
    expect(arena.bytes).toBe(handles.reduce((sum, h) => sum + arena.length(h), 0));
  });

  it('reuses freed handles and drops chunks left without live bytes', () => {
    const arena = new ByteArena();
    const handles = Array.from({ length: 3000 }, (_, i) => arena.put(bytesOf(1000, i)));
    const chunks = arena.chunkCount;
    expect(chunks).toBeGreaterThanOrEqual(3);
    for (const h of handles.slice(0, 2000)) arena.free(h);
    expect(arena.chunkCount).toBeLessThan(chunks);
    const again = arena.put(bytesOf(10, 9999));
    expect(handles.slice(0, 2000)).toContain(again);
    expect(same(arena.get(again), bytesOf(10, 9999))).toBe(true);
    for (let i = 2000; i < 3000; i++) expect(same(arena.get(handles[i] as number), bytesOf(1000, i))).toBe(true);
  });

  it('compacts when garbage passes the live bytes, keeping handles, values and views already given', () => {
    const arena = new ByteArena();
    // Two values of three freed: no chunk empties, so only a compaction gives the garbage back.
    const handles = Array.from({ length: 30_000 }, (_, i) => arena.put(bytesOf(500, i)));
    const view = arena.get(handles[3] as number);
    const before = arena.chunkCount;
    for (let i = 0; i < handles.length; i++) if (i % 3 !== 0) arena.free(handles[i] as number);
    expect(arena.chunkCount).toBeLessThan(before / 2);
    expect(arena.bytes).toBe(10_000 * 500);
    for (let i = 0; i < handles.length; i += 3) expect(same(arena.get(handles[i] as number), bytesOf(500, i))).toBe(true);
    expect(same(view, bytesOf(500, 3))).toBe(true);
    // Handles freed are handed out again, after the compaction too.
    expect(handles).toContain(arena.put(bytesOf(7, 1)));
  });
});
