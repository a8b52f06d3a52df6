/**
 * The quick-start job: the real dhub on a free port with a store of its own, ./dagwork-demo-db
 * (apart from ./dagwork-db, where a hub you start keeps yours), a small DAG of shell commands,
 * four workers that steal, run and complete them, and `dquery status` at the end.
 * Run it twice: the second run finds every task done already (re-creating a task is a no-op).
 */
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, runWorker, shellHandler, type TaskSpecInput } from '../src/index.js';

const dist = join(dirname(fileURLToPath(import.meta.url)), '../..');
const db = './dagwork-demo-db';
const hub = spawn(process.execPath, [join(dist, 'hub/src/main.js'), '--bind', 'tcp://127.0.0.1:*', '--db', db], { stdio: ['ignore', 'inherit', 'pipe'] });
const exited = new Promise<number | null>((resolve) => hub.once('exit', resolve));
const endpoint = await new Promise<string>((resolve, reject) => {
  let log = '';
  hub.stderr.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    const match = /listening on (\S+)/.exec(log);
    if (match?.[1] !== undefined) resolve(match[1]);
  });
  void exited.then((code) => reject(new Error(`dhub exited with ${code}:\n${log}`)));
});
console.log(`dhub (pid ${hub.pid}) listening on ${endpoint}, store in ${db} (the demo's own: your hub's default is ./dagwork-db)`);

try {
  // fetch-i -> square-i -> sum: twenty independent chains joined at the end.
  const cmd = (s: string): Uint8Array => new TextEncoder().encode(s);
  const tasks: TaskSpecInput[] = [];
  for (let i = 1; i <= 20; i++) {
    tasks.push({ name: `fetch-${i}`, payload: cmd(`sleep 0.0$((RANDOM % 5)); echo ${i}`) });
    tasks.push({ name: `square-${i}`, deps: [`fetch-${i}`], payload: cmd(`echo $((${i} * ${i}))`) });
  }
  tasks.push({ name: 'sum', deps: tasks.filter((t) => t.name.startsWith('square')).map((t) => t.name), payload: cmd('echo all squares done') });

  const submitter = new Client({ hub: endpoint, worker: 'submitter' });
  const { created, unchanged } = await submitter.create(tasks);
  console.log(`created ${created} tasks, ${unchanged} existed already`);

  // Four workers in this process, each running one shell command at a time in a scratch directory.
  const summaries = await Promise.all(
    [1, 2, 3, 4].map((i) => runWorker({ hub: endpoint, worker: `worker-${i}`, handler: shellHandler(), handleSignals: false }).done),
  );
  console.log(`workers ran ${summaries.map((s) => s.done).join(' + ')} tasks`);
  spawnSync(process.execPath, [join(dist, 'query/src/main.js'), 'status'], { stdio: 'inherit', env: { ...process.env, DAGWORK_HUB: endpoint } });
  const square = await submitter.lookup('square-7');
  console.log(`result of square-7: ${new TextDecoder().decode(square.task.result).trim()}`);
  submitter.close();
} finally {
  hub.kill('SIGTERM');
  await exited;
}
console.log(`(the demo's store stays in ${db}: run again to see nothing re-run, or remove it (rm -r ${db}) to start over)`);
