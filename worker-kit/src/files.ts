/**
 * Files through the hub: upload a local file by content (resuming what the hub already has, not
 * sending what it holds), download one to a path with its hash checked. Neither side holds a whole
 * file in memory: it goes a chunk (the hub's max_chunk_bytes) at a time.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DagworkError } from '../../proto/src/errors.js';
import type { FileRef, FileStat, Limits } from '../../proto/src/types.js';

/** What the helpers below need of a Client. */
export interface FileOps {
  fileStat(sha256: string[]): Promise<FileStat[]>;
  filePut(sha256: string, size: number, offset: number, data: Uint8Array): Promise<{ received: number; held: boolean }>;
  fileGet(sha256: string, offset: number, length: number): Promise<{ data: Uint8Array; size: number }>;
  hubLimits(): Promise<Limits>;
}

/** The SHA-256 (lowercase hex) and size of a local file, read as a stream. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

export interface UploadResult extends FileRef {
  /** Bytes sent now (0 when the hub held the file already; less than its size when it resumed). */
  sent: number;
}

/**
 * Uploads the file at `path` unless the hub holds it already, resuming an interrupted upload; the
 * FileRef names it `name` (default: the file's base name) and keeps its run bit.
 */
export async function uploadFile(client: FileOps, path: string, options: { name?: string; onProgress?: (sent: number, size: number) => void } = {}): Promise<UploadResult> {
  const info = await stat(path);
  if (!info.isFile()) throw new DagworkError('INVALID_ARGUMENT', `${path} is not a regular file`);
  const { sha256, size } = await hashFile(path);
  const ref = { name: options.name ?? basename(path), sha256, size, executable: (info.mode & 0o111) !== 0 };
  const [known] = await client.fileStat([sha256]);
  if (known?.held === true) return { ...ref, sent: 0 };
  const chunk = Math.max(1, (await client.hubLimits()).maxChunkBytes);
  const length = Math.min(chunk, Math.max(size, 1));
  // Two buffers: the next chunk is read from disk while the hub takes the current one.
  const buffers = [Buffer.allocUnsafe(length), Buffer.allocUnsafe(length)] as const;
  const handle = await open(path, 'r');
  const readAt = async (buffer: Buffer, offset: number): Promise<{ data: Buffer; offset: number }> => {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - offset), offset);
    if (offset + bytesRead < size && bytesRead === 0) throw new DagworkError('INVALID_ARGUMENT', `${path} became shorter while it was being sent`);
    return { data: buffer.subarray(0, bytesRead), offset };
  };
  let sent = 0;
  let ahead: Promise<{ data: Buffer; offset: number }> | undefined;
  try {
    let which = 0;
    let current = await readAt(buffers[0], known?.received ?? 0);
    for (let rounds = 0; ; rounds++) {
      const put = client.filePut(sha256, size, current.offset, current.data);
      const end = current.offset + current.data.length;
      ahead = end < size ? readAt(buffers[1 - which] as Buffer, end) : undefined;
      const reply = await put;
      // The hub says where it is: after our chunk (the last one too), or elsewhere (a resend, another uploader).
      if (reply.received === end) sent += current.data.length;
      if (reply.held) break;
      if (reply.received !== end && rounds > 2 * (size / length + 10)) throw new DagworkError('INTERNAL', `upload of ${path} makes no progress (the hub keeps answering offset ${reply.received})`);
      options.onProgress?.(reply.received, size);
      if (reply.received === end && ahead !== undefined) {
        current = await ahead;
        which = 1 - which;
      } else {
        await ahead?.catch(() => undefined);
        current = await readAt(buffers[which] as Buffer, reply.received);
      }
      ahead = undefined;
    }
  } finally {
    await ahead?.catch(() => undefined);
    await handle.close();
  }
  return { ...ref, sent };
}

/**
 * Downloads the file `sha256` into `dest` (through a temporary name beside it, renamed once its
 * hash is checked: `dest` never holds a partial or a wrong file). Returns its size.
 */
export async function downloadFile(client: FileOps, sha256: string, dest: string, options: { mode?: number } = {}): Promise<number> {
  const chunk = Math.max(1, (await client.hubLimits()).maxChunkBytes);
  const temp = join(dirname(dest), `.${basename(dest)}.part-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const handle = await open(temp, 'w', options.mode ?? 0o644);
  const hash = createHash('sha256');
  let offset = 0;
  // The next chunk is asked for while the current one is written to disk.
  let next: Promise<{ data: Uint8Array; size: number }> | undefined = client.fileGet(sha256, 0, chunk);
  try {
    while (next !== undefined) {
      const { data, size }: { data: Uint8Array; size: number } = await next;
      const at = offset;
      offset += data.length;
      next = data.length > 0 && offset < size ? client.fileGet(sha256, offset, chunk) : undefined;
      if (data.length > 0) {
        await handle.write(data, 0, data.length, at);
        hash.update(data);
      }
      if (offset < size && data.length === 0) throw new DagworkError('INTERNAL', `download of ${sha256} stopped at ${offset} of ${size} bytes`);
    }
    await handle.close();
    const got = hash.digest('hex');
    if (got !== sha256) throw new DagworkError('HASH_MISMATCH', `downloaded file ${sha256} has the SHA-256 ${got}`);
    await rename(temp, dest);
    return offset;
  } catch (err) {
    await next?.catch(() => undefined);
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
}
