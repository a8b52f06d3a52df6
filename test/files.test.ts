/**
 * Files kept by the hub by content, against the real dhub: uploads in chunks (resumed, checked,
 * limited), downloads, files named by tasks (inputs on create, outputs on complete), gc, barriers,
 * and what survives a restart.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanTempDirs, startHub, tempDir, type RunningHub } from './helpers.js';
import { fileRef, pattern, RawClient, sha } from './support/raw.js';
import { downloadFile, uploadFile } from '../worker-kit/src/files.js';
import { Client } from '../worker-kit/src/index.js';
import { FileStore, IDLE_UPLOAD_MS } from '../hub/src/files/store.js';

afterAll(cleanTempDirs);

const CHUNK = 1000;
const W = 'w1';

/** Runs `body` with a dhub of chunks of CHUNK bytes (and `args`) and a bare client of it. */
async function withFilesHub(args: string[], body: (hub: RunningHub, c: RawClient) => Promise<void>, db?: string): Promise<void> {
  const hub = await startHub({ args: ['--max-chunk-bytes', String(CHUNK), ...args], ...(db === undefined ? {} : { db }) });
  const c = new RawClient(hub.endpoint);
  try {
    await body(hub, c);
  } finally {
    c.close();
    await hub.stop();
  }
}

const heldPath = (hub: RunningHub, hash: string): string => join(hub.db, 'files', hash.slice(0, 2), hash);
const partials = (dir: string): string[] => readdirSync(join(dir, 'partial'));

describe('upload and download', () => {
  it('keeps a file sent in chunks under its hash and gives it back in chunks', async () => {
    await withFilesHub([], async (hub, c) => {
      const data = pattern(5_500);
      const hash = sha(data);
      expect((await c.ok({ op: 'fileStat', sha256: [hash] })).files).toEqual([{ sha256: hash, held: false, size: 0, received: 0 }]);
      expect(await c.upload(data, CHUNK)).toEqual({ received: 5_500, held: true });
      expect((await c.ok({ op: 'fileStat', sha256: [hash] })).files[0]).toMatchObject({ held: true, size: 5_500 });
      expect(readFileSync(heldPath(hub, hash)).equals(data)).toBe(true);
      const status = await c.ok({ op: 'status' });
      expect(status).toMatchObject({ files: 1, filesBytes: 5_500 });
      expect(status.limits).toMatchObject({ maxChunkBytes: CHUNK, maxFileBytes: 16 * 2 ** 30, maxFilesBytes: 0 });
      const { data: back, chunks } = await c.download(hash);
      expect(back.equals(data)).toBe(true);
      expect(chunks).toBe(6); // 5 full chunks of max_chunk_bytes and one of 500
      expect((await c.ok({ op: 'fileGet', sha256: hash, offset: 5_000, length: 100 })).data.length).toBe(100);
    });
  });

  it('keeps one sound file when two clients upload it at once', async () => {
    await withFilesHub([], async (hub, c) => {
      const data = pattern(25_500, 13);
      const others = [new RawClient(hub.endpoint), new RawClient(hub.endpoint)];
      try {
        const all = await Promise.all([c, ...others].map((client) => client.upload(data, CHUNK)));
        expect(all).toEqual(Array.from({ length: 3 }, () => ({ received: 25_500, held: true })));
      } finally {
        for (const o of others) o.close();
      }
      expect(readFileSync(heldPath(hub, sha(data))).equals(data)).toBe(true);
      expect(partials(join(hub.db, 'files'))).toEqual([]);
    });
  });

  it("serves worker-kit's uploadFile and downloadFile", async () => {
    await withFilesHub([], async (hub, _c) => {
      const dir = tempDir();
      const data = pattern(3_333, 17);
      writeFileSync(join(dir, 'tool'), data);
      chmodSync(join(dir, 'tool'), 0o755);
      const client = new Client({ hub: hub.endpoint, worker: W });
      try {
        expect(await uploadFile(client, join(dir, 'tool'))).toMatchObject(fileRef('tool', data, true));
        expect(await downloadFile(client, sha(data), join(dir, 'back'))).toBe(3_333);
        expect(readFileSync(join(dir, 'back')).equals(data)).toBe(true);
      } finally {
        client.close();
      }
    });
  });

  it('refuses a chunk over max_chunk_bytes', async () => {
    await withFilesHub([], async (_hub, c) => {
      const data = pattern(CHUNK + 1);
      expect((await c.error({ op: 'filePut', sha256: sha(data), size: data.length, offset: 0, data })).code).toBe('TOO_LARGE');
    });
  });

  it('resumes a cut-off upload from what the hub received, writing nothing for a chunk at another offset', async () => {
    await withFilesHub([], async (hub, c) => {
      const data = pattern(4_200, 7);
      const hash = sha(data);
      for (let offset = 0; offset < 3_000; offset += CHUNK) await c.ok({ op: 'filePut', sha256: hash, size: data.length, offset, data: data.subarray(offset, offset + CHUNK) });
      expect((await c.ok({ op: 'fileStat', sha256: [hash] })).files[0]).toMatchObject({ held: false, received: 3_000 });
      // A chunk resent from the start: nothing written, the hub says where to go on.
      expect(await c.ok({ op: 'filePut', sha256: hash, size: data.length, offset: 0, data: pattern(CHUNK, 99) })).toEqual({ op: 'filePut', received: 3_000, held: false });
      expect(existsSync(heldPath(hub, hash))).toBe(false);
      expect(await c.upload(data, CHUNK, 3_000)).toEqual({ received: 4_200, held: true });
      expect((await c.download(hash)).data.equals(data)).toBe(true);
    });
  });

  it('resumes an upload after the hub was killed, its hash rebuilt from the partial file', async () => {
    const db = join(tempDir(), 'db');
    const data = pattern(3_500, 3);
    const hash = sha(data);
    const first = await startHub({ db, args: ['--max-chunk-bytes', String(CHUNK)] });
    const c1 = new RawClient(first.endpoint);
    await c1.ok({ op: 'filePut', sha256: hash, size: data.length, offset: 0, data: data.subarray(0, CHUNK) });
    await c1.ok({ op: 'filePut', sha256: hash, size: data.length, offset: CHUNK, data: data.subarray(CHUNK, 2 * CHUNK) });
    c1.close();
    await first.stop('SIGKILL');
    await withFilesHub(
      [],
      async (_hub, c) => {
        expect((await c.ok({ op: 'fileStat', sha256: [hash] })).files[0]).toMatchObject({ held: false, received: 2 * CHUNK });
        expect(await c.upload(data, CHUNK, 2 * CHUNK)).toEqual({ received: 3_500, held: true });
        expect((await c.download(hash)).data.equals(data)).toBe(true);
      },
      db,
    );
  });

  it('does not take a file it holds again: stat says held and a put is answered held at once', async () => {
    await withFilesHub([], async (hub, c) => {
      const data = pattern(2_500, 5);
      const hash = sha(data);
      await c.upload(data, CHUNK);
      expect((await c.ok({ op: 'fileStat', sha256: [hash, sha(pattern(10))] })).files.map((f) => f.held)).toEqual([true, false]);
      expect(await c.ok({ op: 'filePut', sha256: hash, size: data.length, offset: 0, data: data.subarray(0, CHUNK) })).toEqual({ op: 'filePut', received: 2_500, held: true });
      expect(partials(join(hub.db, 'files'))).toEqual([]);
    });
  });

  it('answers HASH_MISMATCH for bytes that do not have their hash, and keeps nothing of them', async () => {
    await withFilesHub([], async (hub, c) => {
      const data = pattern(2_000, 11);
      const claimed = sha(pattern(2_000, 12));
      await c.ok({ op: 'filePut', sha256: claimed, size: data.length, offset: 0, data: data.subarray(0, CHUNK) });
      const error = await c.error({ op: 'filePut', sha256: claimed, size: data.length, offset: CHUNK, data: data.subarray(CHUNK) });
      expect(error.code).toBe('HASH_MISMATCH');
      expect(error.message).toContain(sha(data));
      expect((await c.ok({ op: 'fileStat', sha256: [claimed] })).files[0]).toMatchObject({ held: false, received: 0 });
      expect(existsSync(heldPath(hub, claimed))).toBe(false);
      expect(partials(join(hub.db, 'files'))).toEqual([]);
      expect((await c.ok({ op: 'status' })).files).toBe(0);
    });
  });

  it('refuses a file over --max-file-bytes at its first chunk', async () => {
    await withFilesHub(['--max-file-bytes', '1500'], async (hub, c) => {
      const data = pattern(1_501);
      const error = await c.error({ op: 'filePut', sha256: sha(data), size: data.length, offset: 0, data: data.subarray(0, CHUNK) });
      expect(error.code).toBe('TOO_LARGE');
      expect(error.message).toMatch(/1501 bytes is over the hub's max_file_bytes of 1500/);
      expect(partials(join(hub.db, 'files'))).toEqual([]);
    });
  });

  it('answers NO_SPACE past --max-files-bytes, the bytes uploads in progress received counted, writing nothing', async () => {
    await withFilesHub(['--max-files-bytes', '4000'], async (hub, c) => {
      await c.upload(pattern(2_000, 1), CHUNK); // held: 2,000
      const started = pattern(1_500, 2);
      await c.ok({ op: 'filePut', sha256: sha(started), size: started.length, offset: 0, data: started.subarray(0, CHUNK) }); // 1,000 received
      // A new file that does not fit beside what is held and received now is refused at its first chunk.
      const big = pattern(1_200, 3);
      const error = await c.error({ op: 'filePut', sha256: sha(big), size: big.length, offset: 0, data: big.subarray(0, CHUNK) });
      expect(error.code).toBe('NO_SPACE');
      expect(error.message).toMatch(/1200 bytes does not fit .*2000 bytes held and 1000 received by uploads in progress, of max_files_bytes 4000/);
      expect(partials(join(hub.db, 'files'))).toEqual([`${sha(started)}.1500`]);
      expect(await c.upload(started, CHUNK)).toMatchObject({ held: true }); // 3,500 held
      // Two uploads that fit when they began, together over the limit: the chunk that does not fit
      // is refused, and its upload stays where it was, to resume once there is room.
      const [x, y] = [pattern(300, 5), pattern(300, 6)];
      await c.ok({ op: 'filePut', sha256: sha(x), size: 300, offset: 0, data: x.subarray(0, 100) });
      await c.ok({ op: 'filePut', sha256: sha(y), size: 300, offset: 0, data: y.subarray(0, 100) });
      expect(await c.ok({ op: 'filePut', sha256: sha(x), size: 300, offset: 100, data: x.subarray(100) })).toMatchObject({ held: true });
      const full = await c.error({ op: 'filePut', sha256: sha(y), size: 300, offset: 100, data: y.subarray(100) });
      expect(full.code).toBe('NO_SPACE');
      expect(full.message).toMatch(/this upload stays at 100 bytes/);
      expect((await c.ok({ op: 'fileStat', sha256: [sha(y)] })).files[0]).toMatchObject({ held: false, received: 100 });
    });
  });

  it('keeps a live upload when a put names its hash with another size, even one that asks only where to go on', async () => {
    await withFilesHub([], async (_hub, c) => {
      const data = pattern(3_000, 7);
      await c.ok({ op: 'filePut', sha256: sha(data), size: data.length, offset: 0, data: data.subarray(0, CHUNK) });
      for (const data2 of [new Uint8Array(0), pattern(500, 8)]) {
        const error = await c.error({ op: 'filePut', sha256: sha(data), size: 2_999, offset: 0, data: data2 });
        expect(error.code).toBe('INVALID_ARGUMENT');
        expect(error.message).toMatch(/an upload of [0-9a-f]{64} of 3000 bytes is in progress, and this put says the file has 2999/);
      }
      expect((await c.ok({ op: 'fileStat', sha256: [sha(data)] })).files[0]).toMatchObject({ held: false, received: CHUNK });
      expect(await c.upload(data, CHUNK)).toMatchObject({ held: true });
    });
  });

  it('answers NO_SPACE when the disk is full (ENOSPC), keeping nothing under the hash', async () => {
    const files = tempDir();
    const data = pattern(1_500, 21);
    const hash = sha(data);
    // The upload's partial file is /dev/full: every write to it fails with ENOSPC.
    mkdirSync(join(files, 'partial'));
    symlinkSync('/dev/full', join(files, 'partial', `${hash}.${data.length}`));
    await withFilesHub(['--files', files], async (_hub, c) => {
      const error = await c.error({ op: 'filePut', sha256: hash, size: data.length, offset: 0, data: data.subarray(0, CHUNK) });
      expect(error.code).toBe('NO_SPACE');
      expect(error.message).toMatch(/disk is full \(ENOSPC\)/);
      expect((await c.ok({ op: 'fileStat', sha256: [hash] })).files[0]).toMatchObject({ held: false, received: 0 });
      expect(existsSync(join(files, hash.slice(0, 2), hash))).toBe(false);
      // The failed upload is gone; the same file goes in once the disk has room.
      expect(await c.upload(data, CHUNK)).toEqual({ received: 1_500, held: true });
      expect(readFileSync(join(files, hash.slice(0, 2), hash)).equals(data)).toBe(true);
    });
  });

  it('answers UNKNOWN_FILE for a file_get of a file it does not hold', async () => {
    await withFilesHub([], async (_hub, c) => {
      expect((await c.error({ op: 'fileGet', sha256: sha(pattern(5)), offset: 0, length: 0 })).code).toBe('UNKNOWN_FILE');
    });
  });
});

describe('files of tasks', () => {
  it('refuses a create naming an input the hub does not hold, naming task and file, creating nothing', async () => {
    await withFilesHub([], async (_hub, c) => {
      const held = pattern(100, 1);
      await c.upload(held, CHUNK);
      const reply = await c.create([
        { name: 'ok', payload: new TextEncoder().encode('true'), inputs: [fileRef('a.dat', held)] },
        { name: 'bad', payload: new TextEncoder().encode('true'), inputs: [fileRef('in/b.dat', pattern(100, 2))] },
      ]);
      expect(reply.op).toBe('error');
      if (reply.op !== 'error') return;
      expect(reply.error).toMatchObject({ code: 'UNKNOWN_FILE', task: 'bad' });
      expect(reply.error.message).toMatch(/task "bad" names the input "in\/b\.dat"/);
      expect((await c.ok({ op: 'status' })).total).toBe(0);
    });
  });

  it('refuses a completion without its declared outputs uploaded (MISSING_FILES) and keeps the outputs of one with them', async () => {
    await withFilesHub([], async (_hub, c) => {
      await c.ok({ op: 'create', tasks: [{ name: 'render', payload: new TextEncoder().encode('render'), outputs: ['out/frame.png', 'log.txt'] }] });
      const [task] = (await c.ok({ op: 'steal', worker: W, n: 1, pools: [], waitMs: 0, waitWhenFinished: false })).tasks;
      expect(task?.outputs).toEqual(['out/frame.png', 'log.txt']);
      const frame = pattern(2_345, 8);
      const log = pattern(10, 9);
      const complete = (outputs: ReturnType<typeof fileRef>[]) =>
        c.ok({ op: 'complete', worker: W, tasks: [{ name: 'render', result: new TextEncoder().encode('ok'), outputs }], next: undefined });
      const notUploaded = (await complete([fileRef('out/frame.png', frame), fileRef('log.txt', log)])).results[0];
      expect(notUploaded).toMatchObject({ outcome: 'MISSING_FILES' });
      expect(notUploaded?.message).toMatch(/output "out\/frame\.png".*not held/);
      await c.upload(frame, CHUNK);
      await c.upload(log, CHUNK);
      expect((await complete([fileRef('out/frame.png', frame)])).results[0]?.message).toMatch(/leaves out the declared output "log\.txt"/);
      expect((await complete([fileRef('out/frame.png', frame), fileRef('log.txt', log), fileRef('extra', log)])).results[0]?.message).toMatch(/"extra", which is not one of the task's declared outputs/);
      expect((await c.ok({ op: 'lookup', name: 'render' })).task.state).toBe('running'); // nothing recorded
      expect((await complete([fileRef('log.txt', log), fileRef('out/frame.png', frame, true)])).results[0]?.outcome).toBe('ACCEPTED');
      const looked = await c.ok({ op: 'lookup', name: 'render' });
      expect(looked.task.state).toBe('done');
      expect(looked.task.outputs).toEqual([fileRef('out/frame.png', frame, true), fileRef('log.txt', log)]);
      const listed = await c.ok({ op: 'list', states: [], pool: '', prefix: '', limit: 0, after: 0, withParams: false, withResults: true });
      expect(listed.tasks[0]?.outputs).toEqual(looked.task.outputs);
      expect(new TextDecoder().decode(listed.tasks[0]?.result)).toBe('ok');
    });
  });

  it('gc removes files no task names and old uploads, and keeps named, recent and recently touched ones', async () => {
    const db = join(tempDir(), 'db');
    const named = pattern(1_200, 31);
    const orphan = pattern(1_300, 32);
    const recent = pattern(1_400, 33);
    const staleUpload = pattern(2_000, 34);
    const liveUpload = pattern(2_000, 35);
    await withFilesHub(
      [],
      async (_hub, c) => {
        for (const f of [named, orphan]) await c.upload(f, CHUNK);
        await c.ok({ op: 'create', tasks: [{ name: 'uses', payload: new TextEncoder().encode('cat in'), inputs: [fileRef('in', named)] }] });
        for (const f of [staleUpload, liveUpload]) await c.ok({ op: 'filePut', sha256: sha(f), size: f.length, offset: 0, data: f.subarray(0, CHUNK) });
      },
      db,
    );
    // Two hours ago for the held files, a day and more for one upload.
    const files = join(db, 'files');
    const hoursAgo = (h: number): number => (Date.now() - h * 3600_000) / 1000;
    for (const f of [named, orphan]) utimesSync(join(files, sha(f).slice(0, 2), sha(f)), hoursAgo(2), hoursAgo(2));
    utimesSync(join(files, 'partial', `${sha(staleUpload)}.2000`), hoursAgo(25), hoursAgo(25));
    await withFilesHub(
      [],
      async (_hub, c) => {
        await c.upload(recent, CHUNK);
        const dry = await c.ok({ op: 'gc', dryRun: true });
        expect(dry).toEqual({ op: 'gc', removed: 2, removedBytes: 1_300 + CHUNK, kept: 2, keptBytes: 1_200 + 1_400 });
        expect((await c.ok({ op: 'fileStat', sha256: [sha(orphan)] })).files[0]?.held).toBe(true); // a dry run removes nothing...
        utimesSync(join(files, sha(orphan).slice(0, 2), sha(orphan)), hoursAgo(2), hoursAgo(2));
      },
      db,
    );
    await withFilesHub(
      [],
      async (_hub, c) => {
        // ... but its stat touched the file; after a restart only its mtime counts again.
        expect(await c.ok({ op: 'gc', dryRun: false })).toEqual({ op: 'gc', removed: 2, removedBytes: 1_300 + CHUNK, kept: 2, keptBytes: 1_200 + 1_400 });
        const stats = (await c.ok({ op: 'fileStat', sha256: [sha(named), sha(orphan), sha(recent), sha(staleUpload), sha(liveUpload)] })).files;
        expect(stats.map((f) => [f.held, f.received])).toEqual([
          [true, 1_200],
          [false, 0],
          [true, 1_400],
          [false, 0],
          [false, CHUNK],
        ]);
        expect(existsSync(join(files, sha(orphan).slice(0, 2), sha(orphan)))).toBe(false);
        expect(partials(files)).toEqual([`${sha(liveUpload)}.2000`]);
        const reply = await c.create([{ name: 'late', payload: new TextEncoder().encode('x'), inputs: [fileRef('in', orphan)] }]);
        expect(reply.op === 'error' && reply.error.code).toBe('UNKNOWN_FILE');
      },
      db,
    );
  });

  it('keeps a file touched by a stat within the hour from gc, unnamed though it is', async () => {
    const db = join(tempDir(), 'db');
    const data = pattern(700, 41);
    await withFilesHub([], async (_hub, c) => void (await c.upload(data, CHUNK)), db);
    const path = join(db, 'files', sha(data).slice(0, 2), sha(data));
    const twoHoursAgo = (Date.now() - 2 * 3600_000) / 1000;
    utimesSync(path, twoHoursAgo, twoHoursAgo);
    await withFilesHub(
      [],
      async (_hub, c) => {
        await c.ok({ op: 'fileStat', sha256: [sha(data)] });
        expect(await c.ok({ op: 'gc', dryRun: false })).toMatchObject({ removed: 0, kept: 1 });
        expect(existsSync(path)).toBe(true);
      },
      db,
    );
  });
});

describe('barriers', () => {
  it('are never handed out, and once their dependencies are done release a follow-up task', async () => {
    await withFilesHub([], async (_hub, c) => {
      const cmd = new TextEncoder().encode('true');
      await c.ok({
        op: 'create',
        tasks: [
          { name: 'sweep/1', payload: cmd, params: [{ name: 'x', value: '1' }] },
          { name: 'sweep/2', payload: cmd, params: [{ name: 'x', value: '2' }] },
          { name: 'sweep', deps: ['sweep/1', 'sweep/2'], barrier: true },
          { name: 'report', payload: cmd, deps: ['sweep'] },
        ],
      });
      const steal = () => c.ok({ op: 'steal', worker: W, n: 10, pools: [], waitMs: 0, waitWhenFinished: false });
      const first = await steal();
      expect(first.tasks.map((t) => t.name).sort()).toEqual(['sweep/1', 'sweep/2']);
      expect(first.tasks.find((t) => t.name === 'sweep/2')?.params).toEqual([{ name: 'x', value: '2' }]);
      await c.ok({ op: 'complete', worker: W, tasks: [{ name: 'sweep/1' }], next: undefined });
      expect((await c.ok({ op: 'lookup', name: 'sweep' })).task.state).toBe('waiting');
      expect((await steal()).tasks).toEqual([]);
      await c.ok({ op: 'complete', worker: W, tasks: [{ name: 'sweep/2' }], next: undefined });
      expect((await c.ok({ op: 'lookup', name: 'sweep' })).task.state).toBe('done');
      expect((await steal()).tasks.map((t) => t.name)).toEqual(['report']);
    });
  });
});

describe('after a restart', () => {
  it('keeps params, inputs, outputs, param files, barriers and output files of tasks, and the files, after kill -9', async () => {
    const db = join(tempDir(), 'db');
    const input = pattern(1_800, 51);
    const output = pattern(900, 52);
    const spec = {
      name: 'run/7',
      payload: new TextEncoder().encode('./sim < params.in'),
      params: [
        { name: 'alpha', value: '0.5' },
        { name: 'beta', value: 'two words' },
      ],
      inputs: [fileRef('sim', input, true)],
      outputs: ['result.csv'],
      paramFiles: [{ name: 'params.in', param: 'beta' }],
    };
    const first = await startHub({ db, args: ['--max-chunk-bytes', String(CHUNK)] });
    const c1 = new RawClient(first.endpoint);
    await c1.upload(input, CHUNK);
    await c1.ok({ op: 'create', tasks: [spec, { name: 'all', deps: ['run/7'], barrier: true }] });
    const [leased] = (await c1.ok({ op: 'steal', worker: W, n: 1, pools: [], waitMs: 0, waitWhenFinished: false })).tasks;
    expect(leased).toMatchObject({ params: spec.params, inputs: spec.inputs, outputs: spec.outputs, paramFiles: spec.paramFiles });
    await c1.upload(output, CHUNK);
    expect((await c1.ok({ op: 'complete', worker: W, tasks: [{ name: 'run/7', outputs: [fileRef('result.csv', output)] }], next: undefined })).results[0]?.outcome).toBe('ACCEPTED');
    c1.close();
    await first.stop('SIGKILL');
    await withFilesHub(
      [],
      async (_hub, c) => {
        const looked = (await c.ok({ op: 'lookup', name: 'run/7' })).task;
        expect(looked.spec).toMatchObject({ params: spec.params, inputs: spec.inputs, outputs: spec.outputs, paramFiles: spec.paramFiles, barrier: false });
        expect(looked.outputs).toEqual([fileRef('result.csv', output)]);
        expect((await c.ok({ op: 'lookup', name: 'all' })).task).toMatchObject({ state: 'done', spec: { barrier: true } });
        const listed = await c.ok({ op: 'list', states: [], pool: '', prefix: 'run/', limit: 0, after: 0, withParams: true, withResults: false });
        expect(listed.tasks[0]?.params).toEqual(spec.params);
        expect(listed.tasks[0]?.startedAt).toBeGreaterThanOrEqual(listed.tasks[0]?.createdAt ?? Infinity);
        expect((await c.download(sha(input))).data.equals(input)).toBe(true);
        expect((await c.download(sha(output))).data.equals(output)).toBe(true);
      },
      db,
    );
  });
});

describe('the file store under peers that start uploads and leave them', () => {
  it('gives the place of an upload idle for a minute to a new one when every place is taken, and refuses while all are live', async () => {
    let now = 1_000_000;
    const files = await FileStore.open({ dir: tempDir(), maxUploads: 2, maxChunkBytes: CHUNK, clock: () => now });
    const [a, b, c] = [pattern(300, 31), pattern(300, 32), pattern(300, 33)];
    await files.put(sha(a), 300, 0, a.subarray(0, 100));
    now += 30_000;
    await files.put(sha(b), 300, 0, b.subarray(0, 100));
    const refused = await files.put(sha(c), 300, 0, c.subarray(0, 100)).catch((err: unknown) => err as Error & { code: string });
    expect(refused).toMatchObject({ code: 'NO_SPACE' });
    expect((refused as Error).message).toMatch(/2 uploads in progress, the most it takes at once, each with progress in the last 60 s/);
    now += IDLE_UPLOAD_MS - 30_000; // a idle for a minute, b for 30 s
    expect(await files.put(sha(c), 300, 0, c.subarray(0, 100))).toEqual({ received: 100, held: false });
    expect(files.stat([sha(a), sha(b), sha(c)]).map((s) => s.received)).toEqual([0, 100, 100]);
  });
});
