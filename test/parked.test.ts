/** The waiting steals and the policy that serves them, driven step by step with the pure graph. */
import { describe, expect, it, vi } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import { ParkedSteals } from '../hub/src/graph/parked.js';

const T0 = 1_700_000_000_000;
const steal = (worker: string, pools: string[] = [], waitWhenFinished = true) => ({ worker, n: 1, pools, waitWhenFinished });

describe('parked steals', () => {
  it('hands a task to the oldest steal waiting on its pool once it is created', () => {
    const g = new Graph();
    const parked = new ParkedSteals<string>(10);
    parked.park('first', steal('w1', ['gpu']), T0 + 1000);
    parked.park('second', steal('w2', ['gpu']), T0 + 1000);
    expect(parked.serve(g, T0)).toEqual([]);
    g.create([{ name: 't', pool: 'gpu' }], T0);
    const answers = parked.serve(g, T0);
    expect(answers.map((a) => ('result' in a ? [a.client, a.result.tasks.map((t) => t.name)] : a))).toEqual([['first', ['t']]]);
    expect(parked.size).toBe(1);
  });

  it('does not look at steals waiting on pools that did not change', () => {
    const g = new Graph();
    const parked = new ParkedSteals<string>(10);
    parked.park('cpu-waiter', steal('w', ['cpu']), T0 + 1000);
    parked.serve(g, T0);
    const spy = vi.spyOn(g, 'steal');
    g.create([{ name: 'g', pool: 'gpu' }], T0);
    expect(parked.serve(g, T0)).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
  });

  it('answers a steal whose time is up, empty', () => {
    const g = new Graph();
    const parked = new ParkedSteals<string>(10);
    parked.park('late', steal('w'), T0 + 100);
    expect(parked.nextDeadline()).toBe(T0 + 100);
    expect(parked.serve(g, T0 + 100)).toEqual([{ client: 'late', result: { tasks: [], finished: true, retryAfterMs: 0 } }]);
    expect(parked.nextDeadline()).toBeUndefined();
  });

  it('answers a steal that does not wait past finished when its pool runs out of work', () => {
    const g = new Graph();
    const parked = new ParkedSteals<string>(10);
    g.create([{ name: 'only' }], T0);
    g.steal('runner', 1, [], T0);
    parked.park('pilot', steal('w', [], false), T0 + 60_000);
    parked.serve(g, T0);
    g.complete('runner', [{ name: 'only' }], T0 + 5);
    expect(parked.serve(g, T0 + 5)).toEqual([{ client: 'pilot', result: { tasks: [], finished: true, retryAfterMs: 0 } }]);
  });

  it('parks no more steals than its capacity', () => {
    const parked = new ParkedSteals<string>(1);
    expect(parked.park('a', steal('w'), T0 + 1)).toBe(true);
    expect(parked.park('b', steal('w'), T0 + 1)).toBe(false);
    expect(parked.takeAll()).toEqual(['a']);
    expect(parked.size).toBe(0);
  });
});
