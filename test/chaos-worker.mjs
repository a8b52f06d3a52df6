// A worker for the chaos test: runs no-op tasks slowly and prints "ack NAME" for every completion
// the hub recorded. Compiled worker-kit, so the test needs `npm run build` first (npm test does it).
import { runWorker } from '../dist/worker-kit/src/index.js';

const [hub, worker] = process.argv.slice(2);
const w = runWorker({
  hub,
  worker,
  concurrency: 4,
  pollMs: 500,
  client: { timeoutMs: 400, retries: 1 },
  handler: () => new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 8)),
});
w.on('completed', (name) => process.stdout.write(`ack ${name}\n`));
const summary = await w.done;
process.stdout.write(`summary ${JSON.stringify(summary)}\n`);
