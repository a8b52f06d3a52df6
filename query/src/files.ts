/**
 * Local files that tasks take as inputs (`create --input`, `sweep --input`, a task file's
 * `"inputs"`): each found and checked when it is first named (a missing one is an error naming
 * the line, before anything is sent), then uploaded once, however many tasks name it.
 *
 * Until `upload` ran, a file's FileRef carries a stand-in hash (a digest of its absolute path, so
 * that two lines naming different files still tell apart when a task file is checked); afterwards,
 * its real SHA-256. A task is never sent with a stand-in: `ref` refuses to give one once uploads began.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { FileRef } from '../../proto/src/types.js';
import { TaskFileError } from './taskfile.js';

/** What LocalFiles needs of a Client. */
export interface Uploader {
  uploadFile(path: string, options: { name?: string }): Promise<FileRef & { sent: number }>;
}

interface Local {
  size: number;
  executable: boolean;
  /** The SHA-256, once uploaded. */
  sha256?: string;
}

export class LocalFiles {
  private readonly files = new Map<string, Local>();
  private uploading = false;

  /** `baseDir`: where relative paths start (a task file's directory, or the working directory). */
  constructor(readonly baseDir: string = process.cwd()) {}

  /**
   * The FileRef of the local file `path`, placed at `name` in the scratch directory. Throws
   * TaskFileError naming `line` (or, for line 0, an Error naming the path) when it is missing or
   * not a regular file.
   */
  ref(path: string, name: string, line = 0): FileRef {
    const full = isAbsolute(path) ? path : resolve(this.baseDir, path);
    let local = this.files.get(full);
    if (local === undefined) {
      if (this.uploading) throw new TypeError(`input ${full} was not named when the files were uploaded`);
      local = this.look(full, path, line);
      this.files.set(full, local);
    }
    const sha256 = local.sha256 ?? createHash('sha256').update(`dquery stand-in for ${full}`).digest('hex');
    return { name, sha256, size: local.size, executable: local.executable };
  }

  private look(full: string, given: string, line: number): Local {
    const fail = (why: string): never => {
      const message = `input file ${given}${given === full ? '' : ` (${full})`} ${why}`;
      throw line > 0 ? new TaskFileError(line, message) : Object.assign(new Error(`${message}; nothing was sent`), { code: 'ENOENT' });
    };
    let info;
    try {
      info = statSync(full);
    } catch (err) {
      return fail((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(err as Error).message}`);
    }
    if (!info.isFile()) fail('is not a regular file');
    return { size: info.size, executable: (info.mode & 0o111) !== 0 };
  }

  /** Distinct local files named so far. */
  get count(): number {
    return this.files.size;
  }

  /**
   * Uploads every file named so far that the hub does not hold (Client.uploadFile: resumes, skips
   * held files). Returns how many files and bytes were sent. `onFile` is told after each file.
   */
  async upload(client: Uploader, onFile?: (done: number, total: number) => void): Promise<{ files: number; sent: number }> {
    this.uploading = true;
    let done = 0;
    let files = 0;
    let sent = 0;
    for (const [path, local] of this.files) {
      const ref = await client.uploadFile(path, {});
      local.sha256 = ref.sha256;
      // What was sent is what counts (the file may have changed since it was first seen).
      local.size = ref.size;
      local.executable = ref.executable;
      if (ref.sent > 0) {
        files++;
        sent += ref.sent;
      }
      onFile?.(++done, this.files.size);
    }
    return { files, sent };
  }
}
