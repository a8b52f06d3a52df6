/** The verifier runner alone: a verdict needs no timer once the verifier has exited and closed its stderr. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { VerifierRunner } from '../hub/src/verify/runner.js';
import { silentLogger } from '../hub/src/log.js';
import { cleanTempDirs, tempDir } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
  cleanTempDirs();
});

describe('VerifierRunner', () => {
  it('judges a verifier that exited and closed its stderr without waiting for a timer', async () => {
    // With timers frozen, a verdict that waited for the grace after exit (or any timer) never comes.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const runner = new VerifierRunner({ jobs: 2, timeoutMs: 60_000, tmpDir: tempDir(), log: silentLogger });
    const run = (command: string) => runner.run(() => ({ kind: 'result', command, input: '{}\n', task: 't', pool: 'p' }));
    const verdicts = await Promise.all([run('/bin/true'), run('echo no >&2; exit 3'), run('/bin/true'), run('cat >/dev/null')]);
    expect(verdicts).toEqual([
      { passed: true, reason: '' },
      { passed: false, reason: 'no (exit 3)' },
      { passed: true, reason: '' },
      { passed: true, reason: '' },
    ]);
    runner.stop();
  }, 20_000);
});
