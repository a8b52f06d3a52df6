/** What peers make the hub log is rate-limited, so that a flood of bad requests cannot fill the disk. */
import { describe, expect, it } from 'vitest';
import { rateLimited, type Logger } from '../hub/src/log.js';

describe('rate-limited warnings', () => {
  it('writes at most N lines a second, then says how many it left out', () => {
    const lines: string[] = [];
    const log: Logger = { error() {}, warn: (m) => lines.push(m), info() {}, debug() {} };
    let now = 1_000_000;
    const warn = rateLimited(log, 3, () => now);
    for (let i = 0; i < 100; i++) warn(`bad request ${i}`);
    expect(lines).toEqual(['bad request 0', 'bad request 1', 'bad request 2']);
    now += 1000;
    warn('next second');
    expect(lines.slice(3)).toEqual(['97 more warnings like these in the last second were left out', 'next second']);
  });
});
