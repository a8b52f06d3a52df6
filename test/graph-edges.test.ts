/** IdLists (the graph's dependents lists) against plain arrays, under random operations. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdLists } from '../hub/src/graph/edges.js';

type Op = { kind: 'append' | 'remove' | 'removeOdd' | 'clear' | 'move'; owner: number; other: number; item: number };

const op = fc.record({
  kind: fc.constantFrom('append', 'append', 'append', 'remove', 'removeOdd', 'clear', 'move') as fc.Arbitrary<Op['kind']>,
  owner: fc.integer({ min: 0, max: 8 }),
  other: fc.integer({ min: 0, max: 8 }),
  item: fc.integer({ min: 0, max: 5 }),
});

describe('IdLists', () => {
  it("keeps each owner's items in the order added, as arrays would, reusing freed edges", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 300 }), (ops) => {
        const lists = new IdLists();
        const model = new Map<number, number[]>();
        const get = (owner: number): number[] => model.get(owner) ?? [];
        for (const { kind, owner, other, item } of ops) {
          switch (kind) {
            case 'append':
              lists.append(owner, item);
              model.set(owner, [...get(owner), item]);
              break;
            case 'remove': {
              lists.remove(owner, item);
              const items = [...get(owner)];
              const i = items.indexOf(item);
              if (i !== -1) items.splice(i, 1);
              model.set(owner, items);
              break;
            }
            case 'removeOdd':
              lists.removeWhere(owner, (x) => x % 2 === 1);
              model.set(owner, get(owner).filter((x) => x % 2 === 0));
              break;
            case 'clear':
              lists.clear(owner);
              model.set(owner, []);
              break;
            case 'move':
              // Only into an empty list (as the graph moves a replaced task's dependents).
              if (owner === other || get(other).length > 0) break;
              lists.move(owner, other);
              model.set(other, get(owner));
              model.set(owner, []);
              break;
          }
        }
        let total = 0;
        for (let owner = 0; owner <= 8; owner++) {
          expect(lists.toArray(owner)).toEqual(get(owner));
          expect(lists.count(owner)).toBe(get(owner).length);
          total += get(owner).length;
        }
        expect(lists.size).toBe(total);
      }),
      { numRuns: 300 },
    );
  });
});
