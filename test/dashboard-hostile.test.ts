/** The dashboard against hostile HTTP: idle sockets, foreign Host names, forged tokens, Origin null, garbage. */
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hostAllowed } from '../hub/src/http/access.js';
import { graphDot, graphMermaid } from '../query/src/graph-render.js';
import { emptyCounts } from '../proto/src/types.js';
import { http } from './support/http.js';
import { cleanTempDirs, DHUB, freePort, runNode, startHub, tempDir } from './helpers.js';

afterAll(() => cleanTempDirs());

const ADMIN_TOKEN = 'admin-0123456789abcdef';


/** Sends `bytes` on a raw socket; resolves with what came back and how long until it was closed. */
function raw(port: number, bytes: string, ms: number): Promise<{ text: string; closedAfter: number | undefined }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let text = '';
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedAfter: undefined });
    }, ms);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfter: Date.now() - t0 });
    });
  });
}

describe('the dashboard under hostile HTTP', () => {
  it('without a read token, answers only Host names that are loopback or IP literals (no DNS rebinding)', () => {
    const none = { read: undefined, admin: undefined };
    expect(['127.0.0.1:8080', 'localhost:8080', '[::1]:8080', '10.0.0.3', 'localhost'].map((h) => hostAllowed(none, h))).toEqual([true, true, true, true, true]);
    expect(['evil.example:8080', 'evil.example', '127.0.0.1.nip.io:80', '', undefined].map((h) => hostAllowed(none, h))).toEqual([false, false, false, false, false]);
    expect(hostAllowed({ read: 'read-0123456789abcdef', admin: undefined }, 'dash.example.org')).toBe(true);
  });

  it('closes sockets that send nothing, refuses a foreign Host, a forged ?token= and Origin: null, and answers garbage in JSON', async () => {
    const port = await freePort();
    const tokenPath = join(tempDir(), 'admin.token');
    writeFileSync(tokenPath, `${ADMIN_TOKEN}\n`, { mode: 0o600 });
    const hub = await startHub({ args: ['--http', `127.0.0.1:${port}`, '--http-admin-token', tokenPath] });
    try {
      // A connection that never sends a byte is closed after the header timeout (10 s), not held for ever.
      const idle = await raw(port, '', 20_000);
      expect(idle.closedAfter).toBeDefined();
      expect(idle.closedAfter as number).toBeLessThan(15_000);
      // DNS rebinding: a page of evil.example rebound to 127.0.0.1 reads nothing.
      const rebound = await http(port, '/api/status', { headers: { Host: `evil.example:${port}` } });
      expect(rebound.status).toBe(421);
      expect(JSON.parse(rebound.body).error).toContain('Host');
      expect((await http(port, '/api/status')).status).toBe(200);
      // A ?token= that is not the dashboard's own never reaches a cookie (no attributes smuggled in).
      const forged = await http(port, `/?token=${encodeURIComponent('a; Path=/api; Max-Age=99999999')}`);
      expect(forged.status).toBe(401);
      expect(forged.headers['set-cookie']).toBeUndefined();
      const crlf = await http(port, '/?token=a%0d%0aX-Evil:%201');
      expect(crlf.status).toBe(401);
      // Origin: null (a sandboxed or data: page) may not press buttons, even holding the admin cookie.
      const post = await http(port, '/api/retry', {
        method: 'POST',
        headers: { Cookie: `dagwork_token=${ADMIN_TOKEN}`, Origin: 'null', 'Content-Type': 'application/json' },
        body: '{"names":["x"]}',
      });
      expect(post.status).toBe(403);
      // What is not HTTP gets a JSON refusal.
      const garbage = await raw(port, 'HELLO\r\n\r\n', 5_000);
      expect(garbage.text).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(garbage.text.slice(garbage.text.indexOf('\r\n\r\n') + 4)).error).toContain('could not be read');
      expect(hub.log()).not.toContain('Error:'); // nothing of this made the hub log a stack
    } finally {
      await hub.stop();
    }
  }, 40_000);

  it('dhub: the dashboard token options without --http, or a bad --http, are bad usage (exit 2)', async () => {
    const db = join(tempDir(), 'db');
    for (const args of [['--http-token', '/nonexistent'], ['--http', '8080'], ['--http', '127.0.0.1:99999']]) {
      const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db, ...args], { timeoutMs: 15_000 });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(/--http/);
    }
  });
});

describe('the graph drawn for other programs', () => {
  const view = (name: string) => ({ nodes: [{ id: name, counts: { ...emptyCounts(), done: 1 }, state: 'done' as const, pool: 'default', tasks: 1 }], edges: [], tasks: 1 });

  it('writes & as &amp; in DOT, so that Graphviz shows a name holding &lt; as it is', () => {
    const dot = graphDot(view('x/&lt;amp&amp;'));
    expect(dot).toContain('"x/&amp;lt;amp&amp;amp;"');
  });

  it('escapes % in Mermaid labels, so that a name cannot hold a %%{...}%% directive', () => {
    const mermaid = graphMermaid(view("x/%%{init: {'theme':'dark'}}%%"));
    expect(mermaid).not.toContain('%%{');
    expect(mermaid).toContain('#37;#37;{init');
  });
});
