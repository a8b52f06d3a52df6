import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The JSON descriptor `npm run build` writes beside the compiled codec. */
export const DESCRIPTOR_FILE = 'dagwork.descriptor.json';

/** Finds proto/dagwork.proto from wherever this module runs (sources or compiled output). */
export function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'proto', 'dagwork.proto');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`proto/dagwork.proto not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}
