/**
 * CURVE authentication and roles. ZeroMQ's CurveZMQ encrypts every connection and authenticates
 * clients by their public key during the handshake, through a ZAP handler in the same process.
 *
 * zeromq.js cannot tell which key sent a given message, so roles are enforced by endpoint: the hub
 * binds one socket per role, each with the role as its ZAP domain; the ZAP handler admits a key
 * on an endpoint only if the key's role includes that endpoint's role, and each endpoint serves
 * only the operations of its role.
 */
import { readFileSync } from 'node:fs';
import { Router } from 'zeromq';
import { DagworkError } from '../../proto/src/errors.js';
import { Z85_KEY } from '../../proto/src/keys.js';
import { ROLES, roleRank as rank, type Role } from '../../proto/src/roles.js';
import type { Logger } from './log.js';

/**
 * Reads `KEY ROLE [comment]` lines; lines starting with # are comments (not a # elsewhere: Z85
 * keys may hold one). A bad line is an error naming it.
 */
export function readAuthorizedKeys(path: string): Map<string, Role> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DagworkError('INVALID_ARGUMENT', `cannot read the authorized keys ${path}: ${(err as Error).message}`);
  }
  const keys = new Map<string, Role>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [key, role] = line.split(/\s+/);
    if (key === undefined || !Z85_KEY.test(key)) throw new DagworkError('INVALID_ARGUMENT', `${path} line ${i + 1}: expected a 40-character Z85 public key`);
    if (!(ROLES as readonly string[]).includes(role ?? '')) {
      throw new DagworkError('INVALID_ARGUMENT', `${path} line ${i + 1}: role "${role ?? ''}" is not one of ${ROLES.join(', ')}`);
    }
    keys.set(key, role as Role);
  });
  return keys;
}

/** Z85-encodes a 32-byte CURVE key (ZAP hands the client key over as raw bytes). */
export function z85(bytes: Uint8Array): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = (((bytes[i] ?? 0) << 24) | ((bytes[i + 1] ?? 0) << 16) | ((bytes[i + 2] ?? 0) << 8) | (bytes[i + 3] ?? 0)) >>> 0;
    let chunk = '';
    for (let j = 0; j < 5; j++) {
      chunk = alphabet[value % 85] + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}

/**
 * The ZAP handler (RFC 27): admits a CURVE client on an endpoint whose domain is a role when the
 * client's key is authorized with that role or a larger one. Must run before the sockets bind.
 */
export class ZapHandler {
  private readonly socket = new Router();
  private readonly loop: Promise<void>;

  private constructor(
    private readonly keys: Map<string, Role>,
    private readonly log: Logger,
  ) {
    this.loop = this.serve();
  }

  static async start(keys: Map<string, Role>, log: Logger): Promise<ZapHandler> {
    const handler = new ZapHandler(keys, log);
    await handler.socket.bind('inproc://zeromq.zap.01');
    return handler;
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // [routing id, empty, version, request id, domain, address, identity, mechanism, credentials...]
        const [id, empty, version, requestId, domain, address, , mechanism, credentials] = frames;
        const key = mechanism?.toString() === 'CURVE' && credentials !== undefined ? z85(credentials) : '';
        const role = this.keys.get(key);
        const wanted = domain?.toString() as Role | undefined;
        const ok = role !== undefined && wanted !== undefined && ROLES.includes(wanted) && rank(role) >= rank(wanted);
        if (!ok) this.log.warn(`refused a client from ${address?.toString() ?? '?'} on the ${wanted ?? '?'} endpoint: key ${key || '(none)'} ${role === undefined ? 'is not authorized' : `has role ${role}`}`);
        await this.socket.send([
          id as Buffer,
          empty as Buffer,
          version as Buffer,
          requestId as Buffer,
          ok ? '200' : '400',
          ok ? 'OK' : 'not authorized',
          ok ? key : '',
          '',
        ]);
      }
    } catch {
      // closed
    }
  }

  async close(): Promise<void> {
    this.socket.close();
    await this.loop;
  }
}
