/** TaskTable (the graph's columns): dependency names kept side by side, compacted after removals. */
import { describe, expect, it } from 'vitest';
import { TaskTable, type SpecMore } from '../hub/src/graph/tasks.js';

const MORE: SpecMore = { maxAttempts: 1, leaseMs: 1000, params: [], inputs: [], outputs: [], paramFiles: [], barrier: false, afterEnded: false };
const depsFor = (i: number): string[] => Array.from({ length: i % 4 }, (_, k) => `d${i}-${k}`);

describe('TaskTable', () => {
  it("keeps every task's dependency names through removals, compactions and reused ids", () => {
    const table = new TaskTable();
    const N = 900_000; // 1.35M names: past the size at which a compaction is worth it
    const ids: number[] = [];
    for (let i = 0; i < N; i++) ids.push(table.add(`t${i}`, depsFor(i), 'default', 0, 0, MORE, i + 1));
    // Every task but one in ten goes; their names are garbage, then compacted away.
    for (let i = 0; i < N; i++) if (i % 10 !== 0) table.retire(ids[i] as number, 'cancelled');
    table.reclaim();
    expect(table.depSlotsHeld).toBe(1_350_000);
    table.compactDeps();
    expect(table.depSlotsHeld).toBe(90_000); // i % 4 of every tenth i: 0 or 2
    const wrong = (): number[] => {
      const found: number[] = [];
      for (let i = 0; i < N; i += 10) {
        const id = ids[i] as number;
        if (table.depsOf(id).join() !== depsFor(i).join() || table.name[id] !== `t${i}`) found.push(i);
      }
      return found;
    };
    expect(wrong()).toEqual([]);
    // Freed ids are handed out again, with names of their own.
    const again = Array.from({ length: 1000 }, (_, i) => table.add(`u${i}`, [`x${i}`, `y${i}`], 'default', 0, 0, MORE, N + i + 1));
    expect(table.idsUsed).toBe(N);
    again.forEach((id, i) => {
      expect(table.depsOf(id)).toEqual([`x${i}`, `y${i}`]);
      table.setDep(id, 1, `z${i}`);
      expect(table.dep(id, 1)).toBe(`z${i}`);
    });
    expect(wrong()).toEqual([]);
  });

  it("says whether a batch's dependency names fit before any is placed", () => {
    const table = new TaskTable();
    const chunk = 1 << 20;
    expect(table.maxDepNames).toBe(2_047 * chunk);
    // Tasks of over half a chunk take a chunk each at most; smaller ones fill chunks over half.
    expect(table.depRoom(Array.from({ length: 2_046 }, () => chunk / 2 + 1))).toBe(true);
    expect(table.depRoom(Array.from({ length: 2_047 }, () => chunk / 2 + 1))).toBe(false);
    expect(table.depRoom(Array.from({ length: 2_046 }, () => chunk / 2))).toBe(true);
    expect(table.depRoom(Array.from({ length: 2_047 }, () => chunk / 2))).toBe(false);
    expect(table.depRoom(Array.from({ length: 4_092 }, () => chunk / 4))).toBe(true);
    expect(table.depRoom([])).toBe(true);
  });
});
