/**
 * The quick-start job: a hub with its LevelDB store in ./dagwork-db, a small DAG of shell commands,
 * four workers that steal, run and complete them, and the status at the end.
 * Run it twice: the second run finds every task done already (re-creating a task is a no-op).
 */
import { Hub } from '../../hub/src/server.js';
import { createLogger } from '../../hub/src/log.js';
import { formatStatus } from '../../query/src/format.js';
import { Client, runWorker, shellHandler, type TaskSpecInput } from '../src/index.js';

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

// Four workers in this process, each running one shell command at a time in a scratch directory.
const summaries = await Promise.all(
  [1, 2, 3, 4].map((i) => runWorker({ hub: hub.endpoint, worker: `worker-${i}`, handler: shellHandler(), handleSignals: false }).done),
);
console.log(`workers ran ${summaries.map((s) => s.done).join(' + ')} tasks`);
console.log(formatStatus(await submitter.status()));
const square = await submitter.lookup('square-7');
console.log(`result of square-7: ${new TextDecoder().decode(square.task.result).trim()}`);
submitter.close();
await hub.stop();
console.log(`(the store stays in ${db}: run again to see nothing re-run, or remove it to start over)`);
