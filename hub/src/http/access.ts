/**
 * Who may use the dashboard: where it may listen, its tokens, and what a request presents. Pure
 * but for reading token files, so that dhub decides before it binds anything.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { DagworkError } from '../../../proto/src/errors.js';

export interface HttpAddress {
  host: string;
  /** 0 picks a free port. */
  port: number;
}

/** HOST:PORT (an IPv6 host in brackets: [::1]:8080); the host as node:http binds it (no brackets). */
export function parseHttpAddress(text: string): HttpAddress {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (match === null || !(port >= 0 && port <= 65_535)) {
    throw new DagworkError('INVALID_ARGUMENT', `--http ${JSON.stringify(text)}: expected HOST:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080; port 0 picks a free one)`);
  }
  const host = (match[1] as string).replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

/** Reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  return /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1|0*:(0*:)*0*1)$/i.test(host);
}

/**
 * Why the dashboard may not listen on `host` as configured, or undefined when it may: off this
 * machine, the pages show every task, so a token is required.
 */
export function httpBindProblem(host: string, hasToken: boolean): string | undefined {
  if (isLoopbackHost(host) || hasToken) return undefined;
  return `--http ${host.includes(':') ? `[${host}]` : host}: the dashboard on an address other hosts can reach needs --http-token FILE (whoever reaches it would see every task); bind 127.0.0.1 or give a token`;
}

/** Shortest token accepted, in characters. */
export const MIN_TOKEN_CHARS = 16;
/** Longest token accepted (it travels in a header or a cookie). */
export const MAX_TOKEN_CHARS = 512;
/** Printable ASCII without the characters a cookie value may not hold. */
const TOKEN_CHARS = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/;

/** The token a file holds (surrounding white space dropped); `flag` names the option in errors. */
export function readTokenFile(path: string, flag: string): { token: string; othersMayRead: boolean } {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(path, 'utf8');
    mode = statSync(path).mode;
  } catch (err) {
    throw new DagworkError('INVALID_ARGUMENT', `${flag} ${path}: cannot read it: ${(err as Error).message}`);
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) {
    throw new DagworkError('INVALID_ARGUMENT', `${flag} ${path}: the token must be ${MIN_TOKEN_CHARS} to ${MAX_TOKEN_CHARS} characters, it is ${token.length} (make one: openssl rand -hex 32 > ${path})`);
  }
  if (!TOKEN_CHARS.test(token)) {
    throw new DagworkError('INVALID_ARGUMENT', `${flag} ${path}: the token may hold printable ASCII only, without spaces, quotes, commas, semicolons or backslashes`);
  }
  return { token, othersMayRead: (mode & 0o077) !== 0 };
}

/** What a request may do: nothing, read the pages, or press their buttons too. */
export type Access = 'none' | 'read' | 'admin';

export interface Tokens {
  /** Needed to read when set; undefined: reading is open (loopback only, see httpBindProblem). */
  read: string | undefined;
  /** Needed to retry or cancel; undefined: nobody may. */
  admin: string | undefined;
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
/** Equal, in a time that does not depend on where they differ. */
export function sameToken(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** What a request presenting `given` (or nothing) may do. */
export function accessOf(tokens: Tokens, given: string | undefined): Access {
  if (given !== undefined && tokens.admin !== undefined && sameToken(given, tokens.admin)) return 'admin';
  if (tokens.read === undefined) return 'read';
  return given !== undefined && sameToken(given, tokens.read) ? 'read' : 'none';
}

export const TOKEN_COOKIE = 'dagwork_token';

/** The token a request presents: `Authorization: Bearer T`, else the cookie. */
export function presentedToken(authorization: string | undefined, cookie: string | undefined): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (bearer !== null) return bearer[1];
  for (const part of (cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === TOKEN_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Whether a request's Host header may be served. With a read token, any: the token decides. Without
 * one (a loopback dashboard), only a loopback name or an IP literal, so that a web page whose name
 * an attacker rebinds to 127.0.0.1 (DNS rebinding) cannot read the dashboard from a browser here.
 */
export function hostAllowed(tokens: Tokens, host: string | undefined): boolean {
  if (tokens.read !== undefined) return true;
  if (host === undefined) return false;
  const name = /^\[([0-9a-f:.]+)\](?::\d+)?$/i.exec(host)?.[1] ?? /^([^:]+)(?::\d+)?$/.exec(host)?.[1];
  if (name === undefined) return false;
  return isLoopbackHost(name) || /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || /^[0-9a-f:.]+$/i.test(name) && name.includes(':');
}

/** Whether `given` is one of the dashboard's own tokens (what a ?token= may put in a cookie). */
export function isOwnToken(tokens: Tokens, given: string): boolean {
  return (tokens.read !== undefined && sameToken(given, tokens.read)) || (tokens.admin !== undefined && sameToken(given, tokens.admin));
}

/** The cookie that carries a token given once as ?token=. */
export function tokenCookie(token: string): string {
  return `${TOKEN_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`;
}
