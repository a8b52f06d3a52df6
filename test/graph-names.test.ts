/** NameIndex (the graph's names to ids) against a Map, under random insertions, replacements and removals. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NameIndex } from '../hub/src/graph/names.js';

describe('NameIndex', () => {
  it('finds what a Map finds, through growth and removals that shift entries back', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ remove: fc.boolean(), name: fc.integer({ min: 0, max: 300 }) }), { minLength: 50, maxLength: 1_000 }),
        (ops) => {
          // Names are ids' names, as in the graph (TaskTable.name): id i is named names[i].
          const names: string[] = [];
          const index = new NameIndex((id) => names[id] as string);
          const model = new Map<string, number>();
          for (const { remove, name: n } of ops) {
            // Odd lengths, unicode and the empty name: every word of the hash.
            const name = n % 7 === 0 ? `é${n}✓` : n === 1 ? '' : `t${n}`;
            if (remove) {
              expect(index.delete(name)).toBe(model.delete(name));
            } else {
              names.push(name);
              // A name it does not hold goes in by add (a new task's), one it holds by set (a replaced task's).
              if (index.has(name)) index.set(name, names.length - 1);
              else index.add(name, names.length - 1);
              model.set(name, names.length - 1);
            }
          }
          expect(index.size).toBe(model.size);
          for (let n = 0; n <= 300; n++) {
            for (const name of [`é${n}✓`, `t${n}`, '']) {
              expect(index.get(name)).toBe(model.get(name));
              expect(index.has(name)).toBe(model.has(name));
            }
          }
          expect([...index.values()].sort((a, b) => a - b)).toEqual([...model.values()].sort((a, b) => a - b));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('takes a range of ids at once (addRange, a restore) as one at a time, before and after other changes', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 5_000 }), { minLength: 0, maxLength: 3_000 }),
        fc.nat({ max: 40 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 200 }),
        (range, before, removals) => {
          const names: string[] = [];
          const index = new NameIndex((id) => names[id] as string);
          const model = new Map<string, number>();
          // Some names first (ids 0 .. before - 1), then the range after them, as a graph's ids.
          for (let i = 0; i < before; i++) {
            names.push(`b${i}`);
            index.add(`b${i}`, i);
            model.set(`b${i}`, i);
          }
          for (const n of range) names.push(n % 11 === 0 ? `é${n}` : `t${n}`);
          index.addRange(before, names.length);
          for (let id = before; id < names.length; id++) model.set(names[id] as string, id);
          for (const n of removals) expect(index.delete(`t${n}`)).toBe(model.delete(`t${n}`));
          expect(index.size).toBe(model.size);
          for (const name of names) expect(index.get(name)).toBe(model.get(name));
          for (let n = 0; n <= 5_000; n += 97) expect(index.get(`x${n}`)).toBeUndefined();
          expect([...index.values()].sort((a, b) => a - b)).toEqual([...model.values()].sort((a, b) => a - b));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('hashes with a key of its own: two indexes of the same names place them differently', () => {
    // A fixed key would let names that collide be worked out once and sent to every hub.
    const names = Array.from({ length: 1_000 }, (_, i) => `t${i}`);
    const orders = [0, 1].map(() => {
      const index = new NameIndex((id) => names[id] as string);
      names.forEach((name, id) => index.set(name, id));
      return [...index.values()].join();
    });
    expect(orders[0]).not.toBe(orders[1]);
  });

  it('keeps a million names, each found under its own id, added one at a time or as one range', () => {
    const names = Array.from({ length: 1_000_000 }, (_, i) => `r${i % 1000}c${Math.floor(i / 1000)}`);
    const one = new NameIndex((id) => names[id] as string);
    names.forEach((name, id) => one.set(name, id));
    const range = new NameIndex((id) => names[id] as string);
    range.addRange(0, names.length);
    for (const index of [one, range]) {
      let wrong = 0;
      names.forEach((name, id) => {
        if (index.get(name) !== id) wrong++;
      });
      expect(wrong).toBe(0);
      expect(index.size).toBe(names.length);
      expect(index.get('r1000c0')).toBeUndefined();
    }
  });
});
