/** A reader of Prometheus's text format, enough for the hub's metrics (no escapes inside label values but \" \\ \n). */

export interface Scrape {
  /** Each metric's type, by name (from its # TYPE line). */
  types: Map<string, string>;
  /** Each sample's value, by `name{label="value",...}` with the labels sorted by name. */
  samples: Map<string, number>;
}

export function parseMetrics(text: string): Scrape {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\w+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    const sample = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (sample === null) throw new Error(`not a sample line: ${line}`);
    const labels: [string, string][] = [];
    for (const m of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels.push([m[1] as string, m[2] as string]);
    samples.set(key(sample[1] as string, Object.fromEntries(labels)), Number(sample[3]));
  }
  return { types, samples };
}

/** The key of a sample in Scrape.samples. */
export function key(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}="${v}"`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

/** A sample's value; throws when the scrape has no such sample. */
export function sample(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  const value = scrape.samples.get(key(name, labels));
  if (value === undefined) throw new Error(`no sample ${key(name, labels)} in the scrape`);
  return value;
}
