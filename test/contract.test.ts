/** The contract's TypeScript side says exactly what proto/dagwork.proto says. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../proto/src/errors.js';
import { TASK_OUTCOMES, TASK_STATES } from '../proto/src/types.js';
import { ROOT } from './support/proc.js';

const root = protobuf.parse(readFileSync(join(ROOT, 'proto/dagwork.proto'), 'utf8')).root;
const values = (name: string): string[] =>
  Object.entries(root.lookupEnum(`dagwork.v1.${name}`).values)
    .sort(([, a], [, b]) => a - b)
    .map(([key]) => key);

describe('the contract', () => {
  it('has the error codes of the ErrorCode enum, in its order', () => {
    expect(['OK', ...ERROR_CODES]).toEqual(values('ErrorCode'));
  });

  it('has the task states of the TaskState enum, in its order', () => {
    expect(['STATE_UNSPECIFIED', ...TASK_STATES.map((s) => s.toUpperCase())]).toEqual(values('TaskState'));
  });

  it('has the outcomes of the TaskOutcome enum, in its order', () => {
    expect([...TASK_OUTCOMES]).toEqual(values('TaskOutcome'));
  });

  it('is imported by no client from the hub', () => {
    const imports = (dir: string): string[] => {
      const out: string[] = [];
      for (const name of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
        if (!name.endsWith('.ts')) continue;
        const file = join(ROOT, dir, name);
        for (const m of readFileSync(file, 'utf8').matchAll(/from '([^']+)'/g)) if (m[1]?.includes('hub/')) out.push(`${file}: ${m[1]}`);
      }
      return out;
    };
    expect([...imports('worker-kit'), ...imports('query'), ...imports('proto')]).toEqual([]);
  });
});
