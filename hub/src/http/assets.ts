/**
 * The dashboard's files, read once at start: the pages in hub/static (found by walking up from
 * this module, from the sources or the compiled output) and the two libraries they use, from
 * node_modules.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** hub/static, from wherever this module runs. */
export function staticDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'hub', 'static');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`hub/static/index.html not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Every file the dashboard serves, by its path in a URL. */
export function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const dir = staticDir();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) assets.set(`/${name}`, { type, body: readFileSync(join(dir, name)) });
  }
  const require = createRequire(import.meta.url);
  // dagre's package exports no dist/ files: found beside its package.json.
  const dagre = join(dirname(require.resolve('@dagrejs/dagre/package.json')), 'dist', 'dagre.min.js');
  const vendor: [string, string][] = [
    ['/vendor/uPlot.iife.min.js', require.resolve('uplot/dist/uPlot.iife.min.js')],
    ['/vendor/uPlot.min.css', require.resolve('uplot/dist/uPlot.min.css')],
    ['/vendor/dagre.min.js', dagre],
  ];
  for (const [url, path] of vendor) {
    // The source map comment would make a browser's tools ask for a file not served.
    const body = readFileSync(path, 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
    assets.set(url, { type: TYPES[extname(path)] as string, body: Buffer.from(body) });
  }
  return assets;
}
