/**
 * A task file read line by line, in chunks, as often as needed: `addfile` reads it twice (check
 * everything, then send), holding one chunk and the line that spans it at a time. Standard input,
 * a pipe or anything else that cannot be read twice is copied to a temporary file on the first
 * read, and read back from there.
 */
import { closeSync, createReadStream, fstatSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskFileError } from './taskfile.js';

/** One line of a file: its text (no line break) and its number, from 1. */
export interface Line {
  text: string;
  line: number;
}

/** Something whose lines can be read more than once, in order; `lines()` yields them a chunk at a time. */
export interface LineSource {
  lines(): AsyncIterable<Line[]>;
}

/** Bytes read at a time. */
const CHUNK_BYTES = 1 << 20;

// ignoreBOM keeps a U+FEFF inside the file as it is: only the file's first bytes are a byte order mark.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The lines of `chunks` (a byte stream), each checked to be UTF-8; throws TaskFileError naming the first line that is not. */
export async function* splitLines(chunks: AsyncIterable<Buffer>, onChunk?: (chunk: Buffer) => void): AsyncIterable<Line[]> {
  let pending: Buffer = Buffer.alloc(0);
  let line = 0;
  /** One line's bytes as text, counting it: the first line loses a byte order mark, every line a CR before its LF. */
  const decode = (bytes: Buffer): string => {
    line++;
    let start = line === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
    let end = bytes.length;
    if (end > start && bytes[end - 1] === 0x0d) end--; // CRLF
    const text = bytes.subarray(start, end);
    try {
      return utf8.decode(text);
    } catch {
      const bad = firstInvalidByte(text);
      const byte = (text[bad] as number).toString(16).padStart(2, '0');
      throw new TaskFileError(line, `not valid UTF-8 (byte 0x${byte} at byte ${bad + 1} of the line); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8`);
    }
  };
  /**
   * Whole lines (no LF after the last) decoded in one go, a decode and a Buffer a line being most
   * of the reading's time. An LF is never part of another character, so the block is UTF-8 when
   * each line is; when it is not, it is decoded again a line at a time, to name the line.
   */
  const block = (bytes: Buffer, out: Line[]): void => {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      for (let from = 0; ; ) {
        const newline = bytes.indexOf(0x0a, from);
        out.push({ text: decode(bytes.subarray(from, newline === -1 ? bytes.length : newline)), line });
        if (newline === -1) return; // not reached: some line of the block throws
        from = newline + 1;
      }
    }
    const rows = text.split('\n');
    for (let row of rows) {
      line++;
      if (line === 1 && row.charCodeAt(0) === 0xfeff) row = row.slice(1); // the byte order mark, as `decode` drops it
      if (row.charCodeAt(row.length - 1) === 0x0d) row = row.slice(0, -1);
      out.push({ text: row, line });
    }
  };
  for await (const chunk of chunks) {
    onChunk?.(chunk);
    const last = chunk.lastIndexOf(0x0a);
    if (last === -1) {
      pending = Buffer.concat([pending, chunk]);
      continue;
    }
    const lines: Line[] = [];
    block(pending.length === 0 ? chunk.subarray(0, last) : Buffer.concat([pending, chunk.subarray(0, last)]), lines);
    pending = Buffer.from(chunk.subarray(last + 1));
    yield lines;
  }
  if (pending.length > 0) {
    const text = decode(pending);
    yield [{ text, line }];
  }
}

/**
 * Where the first bad sequence of `bytes` starts, for the message only (TextDecoder decides
 * whether the text is valid): the ranges of RFC 3629's table, so overlong forms and surrogates
 * count as bad, as they do for TextDecoder.
 */
function firstInvalidByte(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    const trail = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (trail === 0) return i;
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= trail; k++) {
      const b = bytes[i + k];
      if (b === undefined || b < (k === 1 ? low : 0x80) || b > (k === 1 ? high : 0xbf)) return i;
    }
    i += trail + 1;
  }
  return 0;
}

/** A task file changed between addfile's two readings. */
export class FileChangedError extends Error {
  override name = 'FileChangedError';
}

/**
 * The lines of a file (`-` for standard input). A regular file is read again from disk each time,
 * and refused if it changed in between (its size or modification time); anything else is copied to
 * a temporary file as it is first read (removed by `close`).
 */
export class FileLines implements LineSource {
  private spool: { dir: string; path: string } | undefined;
  private readonly fd: number;
  /** Size and modification time of a regular file, as first read; undefined for anything else. */
  private readonly stamp: string | undefined;
  private reads = 0;

  /**
   * Opens `path` at once, so that a file that cannot be read is said before anything else is done:
   * `what it is` (`task file`, `PARAMS file`) `PATH does not exist`, `cannot be read (permission
   * denied)` or `is a directory` (an Error with the system's code).
   */
  constructor(
    readonly path: string,
    what = 'task file',
  ) {
    const fail = (code: string, why: string): never => {
      throw Object.assign(new Error(`${what} ${path} ${why}`), { code });
    };
    try {
      this.fd = path === '-' ? 0 : openSync(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENOENT') fail(code, 'does not exist');
      if (code === 'EACCES' || code === 'EPERM') fail('EACCES', 'cannot be read (permission denied)');
      if (code === 'EISDIR') fail(code, 'is a directory');
      throw err;
    }
    const stat = fstatSync(this.fd);
    if (stat.isDirectory()) {
      if (this.fd !== 0) closeSync(this.fd);
      fail('EISDIR', 'is a directory');
    }
    this.stamp = stat.isFile() ? `${stat.size} ${stat.mtimeMs}` : undefined;
  }

  async *lines(): AsyncIterable<Line[]> {
    const first = this.reads++ === 0;
    if (first) {
      const input = createReadStream('', { fd: this.fd, highWaterMark: CHUNK_BYTES, autoClose: this.fd !== 0 });
      if (this.stamp !== undefined) {
        yield* splitLines(input);
        return;
      }
      const dir = mkdtempSync(join(tmpdir(), 'dquery-addfile-'));
      this.spool = { dir, path: join(dir, 'tasks') };
      const out = openSync(this.spool.path, 'w', 0o600);
      try {
        yield* splitLines(input, (chunk) => {
          for (let at = 0; at < chunk.length; ) at += writeSync(out, chunk, at);
        });
      } finally {
        closeSync(out);
      }
      return;
    }
    if (this.spool !== undefined) {
      yield* splitLines(createReadStream(this.spool.path, { highWaterMark: CHUNK_BYTES }));
      return;
    }
    const stat = statSync(this.path);
    if (`${stat.size} ${stat.mtimeMs}` !== this.stamp) throw new FileChangedError(`${this.path} changed while dquery checked it; nothing was added`);
    yield* splitLines(createReadStream(this.path, { highWaterMark: CHUNK_BYTES }));
  }

  /** Removes the temporary copy, if there is one. */
  close(): void {
    if (this.spool !== undefined) rmSync(this.spool.dir, { recursive: true, force: true });
    this.spool = undefined;
  }
}
