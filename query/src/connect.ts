/**
 * dquery's connection to the hub: the endpoint checked (tcp://HOST:PORT, with the form to write
 * when it is not), how long to wait, and a quick answer when nothing listens there.
 *
 * ZeroMQ connects in the background and retries for ever, so a hub that is not running looks like
 * a hub that does not answer: the client would wait out every timeout. Beside the first request
 * dquery opens a plain TCP connection to a tcp:// endpoint and closes it at once; if that is
 * refused (nothing listens on the port) or the host name does not resolve, for about a second (a
 * hub started a moment earlier gets time to bind), dquery says so instead of waiting.
 */
import { connect as tcpConnect } from 'node:net';
import { parseEndpoint } from '../../proto/src/args.js';
import { Client, type ClientOptions } from '../../worker-kit/src/client.js';
import { UsageError } from './io.js';

/** How long a refused connection must go on being refused before dquery says nothing listens. */
const REFUSED_FOR_MS = 1000;
const PROBE_EVERY_MS = 100;

/** Nothing listens at the hub's endpoint, or its host does not resolve. */
export class NoHubError extends Error {
  override name = 'NoHubError';
}

/** The endpoint in `value`, or UsageError saying where it came from and what to write instead. */
export function hubEndpoint(value: string, fromEnv: boolean): string {
  try {
    return parseEndpoint(value);
  } catch (err) {
    throw new UsageError(`${fromEnv ? 'DAGWORK_HUB' : '--hub'}: ${(err as Error).message}`);
  }
}

/** Resolves when a plain TCP connection to host:port is accepted; rejects with its error code otherwise. */
function tryConnect(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/**
 * Rejects with NoHubError when nothing listens at `endpoint` (refused for REFUSED_FOR_MS) or its
 * host does not resolve; never resolves otherwise (it only stops trying). Not tcp://: never settles.
 */
export function noHubAt(endpoint: string): { refused: Promise<never>; stop(): void } {
  let stopped = false;
  const refused = new Promise<never>((_, reject) => {
    const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(endpoint);
    if (m === null) return;
    const host = (m[1] ?? m[2]) as string;
    const port = Number(m[3]);
    const started = Date.now();
    const attempt = (): void => {
      if (stopped) return;
      tryConnect(host, port).then(
        () => undefined,
        (err: NodeJS.ErrnoException) => {
          if (stopped) return;
          if (err.code === 'ENOTFOUND') {
            reject(new NoHubError(`cannot reach the hub at ${endpoint}: the host name "${host}" does not resolve`));
          } else if (err.code === 'ECONNREFUSED') {
            if (Date.now() - started >= REFUSED_FOR_MS) {
              reject(new NoHubError(`no hub at ${endpoint}: connection refused (is dhub running, and on that port? start one with: npx dhub --bind ${endpoint})`));
            } else {
              setTimeout(attempt, PROBE_EVERY_MS).unref();
            }
          }
        },
      );
    };
    attempt();
  });
  refused.catch(() => undefined); // rejected only for whoever races it
  return {
    refused,
    stop: () => {
      stopped = true;
    },
  };
}

/**
 * A Client whose every call also ends, with NoHubError, when nothing listens at the hub. The
 * probe runs alongside the first call, so a hub that is there costs no extra round trip.
 */
export function connect(options: Partial<ClientOptions> & { hub: string }): { client: Client; close(): void } {
  const client = new Client(options);
  const probe = noHubAt(options.hub);
  const guarded = new Proxy(client, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function' || key === 'close') return value;
      return (...args: unknown[]): unknown => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        result.then(
          () => probe.stop(), // the hub answered: it is there
          () => undefined,
        );
        return Promise.race([result, probe.refused]);
      };
    },
  });
  return {
    client: guarded,
    close: () => {
      probe.stop();
      client.close();
    },
  };
}
