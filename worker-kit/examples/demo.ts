/**
 * The quick-start job: a hub with its LevelDB store in ./dagwork-db, a small DAG of shell commands,
 * four workers that steal, run and complete them, and the status at the end.
 * Run it twice: the second run finds every task done already (re-creating a task is a no-op).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Hub } from '../../hub/src/server.js';
import { createLogger } from '../../hub/src/log.js';
import { formatStatus } from '../../query/src/format.js';
import { Client, type TaskSpecInput } from '../src/index.js';

const run = promisify(execFile);
const db = './dagwork-db';
const hub = await Hub.start({ bind: 'tcp://127.0.0.1:*', db, log: createLogger('warn') });
console.log(`dhub listening on ${hub.endpoint}, store in ${db}`);

// fetch-i -> square-i -> sum: twenty independent chains joined at the end.
const cmd = (s: string): Uint8Array => new TextEncoder().encode(s);
const tasks: TaskSpecInput[] = [];
for (let i = 1; i <= 20; i++) {
  tasks.push({ name: `fetch-${i}`, payload: cmd(`sleep 0.0$((RANDOM % 5)); echo ${i}`) });
  tasks.push({ name: `square-${i}`, deps: [`fetch-${i}`], payload: cmd(`echo $((${i} * ${i}))`) });
}
tasks.push({ name: 'sum', deps: tasks.filter((t) => t.name.startsWith('square')).map((t) => t.name), payload: cmd('echo all squares done') });

const submitter = new Client({ hub: hub.endpoint, worker: 'submitter' });
const { created, unchanged } = await submitter.create(tasks);
console.log(`created ${created} tasks, ${unchanged} existed already`);

async function worker(id: string): Promise<number> {
  const client = new Client({ hub: hub.endpoint, worker: id });
  let ran = 0;
  let done: { name: string; result: Uint8Array }[] = [];
  for (;;) {
    // Complete what was run and take the next task in one round trip.
    const { next } = await client.complete(done, { n: 1, waitMs: 500 });
    done = [];
    const task = next?.tasks[0];
    if (task === undefined) {
      if (next?.finished === true) break;
      continue;
    }
    try {
      const { stdout } = await run('sh', ['-c', new TextDecoder().decode(task.payload)]);
      done.push({ name: task.name, result: new TextEncoder().encode(stdout) });
      ran++;
    } catch (err) {
      await client.fail(task.name, (err as Error).message);
    }
  }
  client.close();
  return ran;
}

const ran = await Promise.all(['worker-1', 'worker-2', 'worker-3', 'worker-4'].map(worker));
console.log(`workers ran ${ran.join(' + ')} tasks`);
console.log(formatStatus(await submitter.status()));
const sum = await submitter.lookup('square-7');
console.log(`result of square-7: ${new TextDecoder().decode(sum.task.result).trim()}`);
submitter.close();
await hub.stop();
console.log(`(the store stays in ${db}: run again to see nothing re-run, or remove it to start over)`);
