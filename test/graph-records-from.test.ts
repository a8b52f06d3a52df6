/**
 * Graph.recordsFrom: a snapshot walked a slice at a time while the graph changes between slices
 * (created, deleted, replaced, names made again, completed). Random runs: no name is handed over
 * twice; every task that existed through the whole walk (replaced ones included: a replace keeps
 * the seq) is, once; none created after the walk began is (its records are all in the log a
 * snapshot keeps).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';

const T0 = 1_700_000_000_000;

type Step = { kind: 'create' | 'delete' | 'again' | 'replace' | 'complete'; pick: number } | { kind: 'slice'; n: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constantFrom('create' as const, 'delete' as const, 'again' as const, 'replace' as const, 'complete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('slice' as const), n: fc.integer({ min: 1, max: 5 }) }),
);

describe('Graph.recordsFrom', () => {
  it('hands over each task that lived through the walk once, no name twice, none created after it began (random runs)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.array(step, { maxLength: 80 }), (initial, steps) => {
        const g = new Graph();
        let made = 0;
        const create = (): void => {
          made++;
          g.create([{ name: `t${made}`, deps: made > 1 && made % 3 !== 0 ? [`t${made - 1}`] : [], payload: new TextEncoder().encode(`p${made}`) }], T0);
        };
        for (let i = 0; i < initial; i++) create();
        const names = (): string[] => g.list({ states: [], pool: '', prefix: '', limit: 1000, after: 0, withParams: false, withResults: false }, T0).tasks.map((t) => t.name);
        const flush = (): void => {
          g.takeDirty();
          g.takeDeleted();
          g.takeDirtyPools();
          g.takeNewSpecs();
        };
        flush();
        const before = g.nextTaskSeq;
        const atStart = new Set(names());
        /** Names deleted since the walk began (deleted before the walk reached them, they are not handed over). */
        const touched = new Set<string>();
        const handed = new Map<string, number>();
        let next: number | undefined = 0;
        const slice = (n: number): void => {
          if (next === undefined) return;
          let left = n;
          next = g.recordsFrom(
            next,
            before,
            (r) => {
              expect(r.seq).toBeLessThan(before);
              handed.set(r.spec.name, (handed.get(r.spec.name) ?? 0) + 1);
            },
            () => left-- > 0,
          );
        };
        for (const s of steps) {
          const current = names();
          const pick = current[(s as { pick: number }).pick % Math.max(1, current.length)];
          switch (s.kind) {
            case 'create':
              create();
              break;
            case 'delete':
            case 'again':
              if (pick !== undefined) {
                // With what depends on it (a task with dependents is not deleted alone).
                g.deleteTasks([pick], true, T0);
                const left = new Set(names());
                for (const name of current) if (!left.has(name)) touched.add(name);
                // Created again under the same name: a new task, past the walk's end.
                if (s.kind === 'again') g.create([{ name: pick, payload: new TextEncoder().encode('again') }], T0);
              }
              break;
            case 'replace':
              if (pick !== undefined) g.replace([{ name: pick, payload: new TextEncoder().encode('replaced') }], false, false, T0);
              break;
            case 'complete': {
              const task = g.steal('w', 1, [], T0).tasks[0];
              if (task !== undefined) g.complete('w', [{ name: task.name }], T0);
              break;
            }
            case 'slice':
              flush();
              slice(s.n);
              break;
            default:
              throw new Error(`no such step ${(s satisfies never) as string}`);
          }
        }
        flush();
        while (next !== undefined) slice(7);
        for (const [name, count] of handed) expect(count, name).toBe(1);
        // Lived through the walk untouched: handed over.
        for (const name of atStart) if (!touched.has(name)) expect(handed.get(name), name).toBe(1);
        // Created after it began: not handed over (a name made again only if its first task was).
        for (const name of names()) if (!atStart.has(name)) expect(handed.has(name), name).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses to walk a graph holding changes the store was not given', () => {
    const g = new Graph();
    g.create([{ name: 'a' }], T0);
    expect(() => g.recordsFrom(0, g.nextTaskSeq, () => undefined, () => true)).toThrow(/changes the store was not given/);
  });
});
