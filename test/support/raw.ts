/**
 * A bare client for the hub's tests: one Request socket, the contract's codec, nothing else (the
 * worker-kit Client checks and shapes what it sends; these tests want the wire as it is).
 */
import { createHash } from 'node:crypto';
import { Request as ReqSocket } from 'zeromq';
import { decodeReply, encodeRequest, type Reply, type Request } from '../../proto/src/codec.js';
import type { WireError } from '../../proto/src/codec.js';
import type { FileRef, TaskSpecInput } from '../../proto/src/types.js';

export class RawClient {
  private socket: ReqSocket;

  constructor(private readonly endpoint: string) {
    this.socket = this.connect();
  }

  private connect(): ReqSocket {
    const socket = new ReqSocket({ receiveTimeout: 10_000, linger: 0 });
    socket.connect(this.endpoint);
    return socket;
  }

  /** Sends `request`, resolves with the hub's reply (an error reply too). */
  async call(request: Request): Promise<Reply> {
    try {
      await this.socket.send(encodeRequest(request));
      const [frame] = await this.socket.receive();
      return decodeReply(frame as Buffer);
    } catch (err) {
      // A REQ socket whose reply did not come is stuck: a new one for the next request.
      this.socket.close();
      this.socket = this.connect();
      throw err;
    }
  }

  /** The reply of `op`, or throws naming the error the hub answered. */
  async ok<Op extends Reply['op']>(request: Request & { op: Op }): Promise<Extract<Reply, { op: Op }>> {
    const reply = await this.call(request);
    if (reply.op !== request.op) throw new Error(`${request.op} answered ${reply.op === 'error' ? `${reply.error.code}: ${reply.error.message}` : reply.op}`);
    return reply as Extract<Reply, { op: Op }>;
  }

  /** The error the hub answered `request` with; throws if it answered otherwise. */
  async error(request: Request): Promise<WireError> {
    const reply = await this.call(request);
    if (reply.op !== 'error') throw new Error(`${request.op} was answered ${reply.op}, not an error`);
    return reply.error;
  }

  close(): void {
    this.socket.close();
  }

  // --- shorthands ---------------------------------------------------------------------------

  create(tasks: TaskSpecInput[]): Promise<Reply> {
    return this.call({ op: 'create', tasks });
  }

  /** Uploads `data` in chunks of `chunk` bytes from where the hub is; resolves with the last reply. */
  async upload(data: Uint8Array, chunk: number, from = 0): Promise<{ received: number; held: boolean }> {
    const sha256 = sha(data);
    let offset = from;
    for (;;) {
      const piece = data.subarray(offset, Math.min(data.length, offset + chunk));
      const { received, held } = await this.ok({ op: 'filePut', sha256, size: data.length, offset, data: piece });
      if (held || (received === offset && piece.length === 0)) return { received, held };
      offset = received;
    }
  }

  /** Downloads a held file in chunks of `length` bytes (0: the hub's max_chunk_bytes). */
  async download(sha256: string, length = 0): Promise<{ data: Buffer; chunks: number }> {
    const parts: Buffer[] = [];
    let offset = 0;
    let chunks = 0;
    for (;;) {
      const reply = await this.ok({ op: 'fileGet', sha256, offset, length });
      chunks++;
      if (reply.data.length === 0) break;
      parts.push(Buffer.from(reply.data));
      offset += reply.data.length;
      if (offset >= reply.size) break;
    }
    return { data: Buffer.concat(parts), chunks };
  }
}

export function sha(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A FileRef of `data` named `name`. */
export function fileRef(name: string, data: Uint8Array, executable = false): FileRef {
  return { name, sha256: sha(data), size: data.length, executable };
}

/** Bytes that differ from chunk to chunk (a shifted chunk would not pass for another). */
export function pattern(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
