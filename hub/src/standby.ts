/**
 * A standby hub's endpoints: bound where the hub will serve once it takes over, answering every
 * request at once with the error STANDBY (another hub on the same store is active), so that a
 * client given several endpoints moves on to the one that answers. Nothing is decoded, nothing
 * is kept: each message gets its one reply, or nothing if the peer does not take it.
 */
import { Router } from 'zeromq';
import { encodeReply } from '../../proto/src/codec.js';
import type { KeyPair } from '../../proto/src/keys.js';
import type { Logger } from './log.js';

const EMPTY_FRAME = Buffer.alloc(0);

export class StandbyResponder {
  private readonly loops: Promise<void>[];

  /** The bound endpoints (a `*` port resolved). */
  get endpoints(): string[] {
    return this.routers.map((r) => r.endpoint);
  }

  private constructor(
    private readonly routers: { router: Router; endpoint: string }[],
    reply: Uint8Array,
    log: Logger,
  ) {
    this.loops = routers.map(({ router }) => StandbyResponder.answer(router, Buffer.from(reply), log));
  }

  /**
   * Binds `endpoints` (with CURVE encryption when `curve` is given: a standby has no key list and
   * admits any client key, to tell it this only) and answers each request with STANDBY `message`.
   */
  static async bind(endpoints: readonly string[], options: { curve: KeyPair | undefined; maxMessageBytes: number; message: string; log: Logger }): Promise<StandbyResponder> {
    const routers: { router: Router; endpoint: string }[] = [];
    try {
      for (const endpoint of endpoints) {
        const router = new Router({ maxMessageSize: options.maxMessageBytes + 65_536, linger: 0, mandatory: true, sendTimeout: 0, handshakeInterval: 10_000 });
        if (options.curve !== undefined) {
          router.curveServer = true;
          router.curveSecretKey = options.curve.secretKey;
          router.curvePublicKey = options.curve.publicKey;
        }
        routers.push({ router, endpoint });
        await router.bind(endpoint);
        (routers[routers.length - 1] as { endpoint: string }).endpoint = router.lastEndpoint ?? endpoint;
      }
    } catch (err) {
      for (const { router } of routers) router.close();
      throw err;
    }
    const reply = encodeReply({ op: 'error', error: { code: 'STANDBY', message: options.message, task: '' } });
    return new StandbyResponder(routers, reply, options.log);
  }

  private static async answer(router: Router, reply: Buffer, log: Logger): Promise<void> {
    try {
      for await (const frames of router) {
        const id = frames[0] as Buffer;
        const delimited = frames.length === 3 && (frames[1] as Buffer).length === 0;
        // A peer that is gone or does not read gets nothing: the send fails at once (mandatory, no timeout).
        await router.send(delimited ? [id, EMPTY_FRAME, reply] : [id, reply]).catch(() => undefined);
      }
    } catch (err) {
      if (!router.closed) log.warn(`standby endpoint stopped answering: ${(err as Error).message}`);
    }
  }

  /** Unbinds every endpoint (so that the active hub can bind it at once) and closes them. */
  async close(): Promise<void> {
    for (const { router, endpoint } of this.routers) {
      await router.unbind(endpoint).catch(() => undefined);
      router.close();
    }
    await Promise.all(this.loops);
  }
}
