/** CURVE key files as `dquery keygen` writes them, read by dhub, dquery, dworker and worker-kit. */
import { readFileSync } from 'node:fs';
import { DagworkError } from './errors.js';

export interface KeyPair {
  publicKey: string;
  secretKey: string;
}

/** A CURVE key in Z85: 40 characters of ZeroMQ's Z85 alphabet. */
export const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/**
 * Reads a key file as `dquery keygen` writes it: `public-key = ...` and `secret-key = ...` lines
 * (a public-key file has only the first).
 */
export function readKeyFile(path: string): { publicKey: string; secretKey?: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DagworkError('INVALID_ARGUMENT', `cannot read the key file ${path}: ${(err as Error).message}`);
  }
  const keys: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^\s*(public|secret)-key\s*=\s*"?([^"\s]+)"?\s*$/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) keys[match[1]] = match[2];
  }
  const publicKey = keys.public;
  if (publicKey === undefined || !Z85_KEY.test(publicKey)) throw new DagworkError('INVALID_ARGUMENT', `${path} holds no valid public-key line (40 Z85 characters)`);
  if (keys.secret !== undefined && !Z85_KEY.test(keys.secret)) throw new DagworkError('INVALID_ARGUMENT', `${path}: the secret-key is not 40 Z85 characters`);
  return keys.secret === undefined ? { publicKey } : { publicKey, secretKey: keys.secret };
}

export function formatKeyFile(pair: KeyPair): string {
  return `# dagwork CURVE key pair: keep this file secret\npublic-key = ${pair.publicKey}\nsecret-key = ${pair.secretKey}\n`;
}

export function formatPublicKeyFile(publicKey: string): string {
  return `# dagwork CURVE public key: give it to the hub's authorized-keys file\npublic-key = ${publicKey}\n`;
}
