/**
 * `dquery report --html`: the report as ONE self-contained HTML file (no external URL): uPlot
 * inlined for the timeline chart, tables for the rest. Every text from the hub (task, pool and
 * worker names, failure reasons, params) goes through `escape`; the report's data for the chart
 * is embedded as JSON with every `<` written \u003c, so no text can close the script.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TASK_STATES } from '../../proto/src/types.js';
import { runTime } from './format.js';
import type { Report } from './report.js';

/** uPlot's script and style sheet, as its package ships them. */
export interface ChartLibrary {
  js: string;
  css: string;
}

/** uPlot's dist files, read from the installed package. */
export function loadChartLibrary(): ChartLibrary {
  const dir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  const library = { js: readFileSync(join(dir, 'uPlot.iife.min.js'), 'utf8'), css: readFileSync(join(dir, 'uPlot.min.css'), 'utf8') };
  // Inlined as they are: they must not end their own element.
  if (/<\/script/i.test(library.js) || /<\/style/i.test(library.css)) throw new Error(`uPlot's files in ${dir} cannot be inlined (they hold </script or </style)`);
  return library;
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * `s` as HTML text (or a quoted attribute's value). Control characters but tab and line breaks
 * (an ESC of a coloured stderr) are shown as \xNN, as dquery's text does: the file may be cat.
 */
export function escape(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => ENTITIES[c] as string)
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** `value` as JSON that can sit inside a <script> element: no `<` at all. */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

const iso = (ms: number): string => (ms > 0 ? new Date(ms).toISOString() : '-');

function table(id: string, head: string[], rows: string[][]): string {
  const th = head.map((h) => `<th>${escape(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('\n');
  return `<table id="${id}"><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
.sub { color: #666; margin-top: 0; }
.unfinished { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.5em 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
code { font-size: 13px; }
`;

/** Critical-path tasks the page shows at each end of a longer chain (the JSON has them all). */
const PATH_ENDS = 100;

/** The HTML page of `report`, with `library` (uPlot) inlined. */
export function reportHtml(report: Report, library: ChartLibrary): string {
  const c = report.counts;
  const title = `dagwork report${report.pool === null ? '' : ` (pool ${report.pool})`}`;
  const parts: string[] = [];
  parts.push(`<h1>${escape(title)}</h1>`);
  parts.push(
    `<p class="sub">made ${escape(iso(report.now))}; ${report.tasks} tasks${report.span === null ? '' : `, from ${escape(iso(report.span.start))} to ${escape(iso(report.span.end))} (${escape(runTime(report.span.ms))})`}</p>`,
  );
  if (!report.finished) {
    parts.push(`<p class="unfinished" id="unfinished">The run is not finished: ${c.waiting} waiting, ${c.ready} ready, ${c.running} running, ${c.verifying} verifying.</p>`);
  }

  parts.push('<h2>Tasks per state</h2>');
  parts.push(table('counts', [...TASK_STATES, 'total'], [[...TASK_STATES.map((s) => String(c[s])), String(report.tasks)]]));

  parts.push(`<h2>Timeline</h2><p class="sub">completions and failures per ${escape(runTime(report.timeline.stepMs))} (UTC)</p>`);
  parts.push(report.timeline.done.length === 0 ? '<p>Nothing completed or failed yet.</p>' : '<div id="timeline"></div>');

  const path = report.criticalPath;
  parts.push(`<h2>Critical path</h2><p class="sub">${path.tasks.length} task${path.tasks.length === 1 ? '' : 's'}, ${escape(runTime(path.totalMs))} in all: from the first one's creation to the last one's end; each waited for the one before</p>`);
  parts.push(
    table(
      'critical-path',
      ['#', 'task', 'wait', 'run', 'started', 'done'],
      path.tasks.flatMap((t, i) => {
        const n = path.tasks.length;
        if (n <= 2 * PATH_ENDS || i < PATH_ENDS || i >= n - PATH_ENDS) {
          return [[String(i + 1), `<code>${escape(t.name)}</code>`, escape(runTime(t.waitMs)), escape(runTime(t.runMs)), escape(iso(t.startedAt)), escape(iso(t.doneAt))]];
        }
        return i === PATH_ENDS ? [['...', `${n - 2 * PATH_ENDS} more (--json lists them all)`, '', '', '', '']] : [];
      }),
    ),
  );

  parts.push('<h2>Run times per pool</h2><p class="sub">done tasks, barriers excluded: from their last attempt\'s lease to done</p>');
  parts.push(
    table(
      'pools',
      ['pool', 'runs', 'min', 'median', 'p95', 'max'],
      report.pools.map((p) => [escape(p.pool), String(p.runs), runTime(p.minMs), runTime(p.medianMs), runTime(p.p95Ms), runTime(p.maxMs)].map((s, i) => (i === 0 ? s : escape(s)))),
    ),
  );

  parts.push('<h2>Slowest tasks</h2>');
  parts.push(table('slowest', ['task', 'pool', 'worker', 'run', 'started'], report.slowest.map((t) => [`<code>${escape(t.name)}</code>`, escape(t.pool), escape(t.worker), escape(runTime(t.runMs)), escape(iso(t.startedAt))])));

  const f = report.failures;
  parts.push(`<h2>Failures</h2><p class="sub">${f.total} tasks failed, ${f.groupsTotal} reasons${f.groupsTotal > f.groups.length ? ` (the ${f.groups.length} most frequent shown)` : ''}</p>`);
  parts.push(
    table(
      'failures',
      ['reason (first line)', 'tasks', 'examples'],
      f.groups.map((g) => [
        `<code>${escape(g.reason)}</code>`,
        String(g.count),
        g.examples
          .map((e) => {
            const params = Object.entries(e.params).map(([k, v]) => `${k}=${v}`).join(' ');
            return `<code>${escape(e.name)}</code>${params === '' ? '' : ` ${escape(params)}`}`;
          })
          .join('<br>'),
      ]),
    ),
  );

  const w = report.workers;
  parts.push(`<h2>Workers</h2><p class="sub">every pool; ${w.listed.length} of ${w.total} workers the hub knows${w.total > w.listed.length ? ' (those holding tasks, then the most recently seen)' : ''}</p>`);
  parts.push(
    table(
      'workers',
      ['worker', 'done', 'failed', 'runs', 'busy', 'mean run', 'max run'],
      w.listed.map((x) => [escape(x.worker), String(x.done), String(x.failed), String(x.runs), escape(runTime(x.busyMs)), escape(runTime(x.meanRunMs)), escape(runTime(x.maxRunMs))]),
    ),
  );

  const chart =
    report.timeline.done.length === 0
      ? ''
      : `<script>${library.js}</script>
<script>
const timeline = ${scriptJson(report.timeline)};
const xs = timeline.done.map((_, i) => (timeline.start + i * timeline.stepMs) / 1000);
new uPlot({
  width: Math.min(1100, document.body.clientWidth - 20),
  height: 300,
  // UTC, as the tables' times.
  tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
  series: [{}, { label: 'done', stroke: '#2a7', fill: 'rgba(34,170,119,0.15)' }, { label: 'failed', stroke: '#d33' }],
  axes: [{}, { label: 'tasks per ' + ${scriptJson(runTime(report.timeline.stepMs))} }],
}, [xs, timeline.done, timeline.failed], document.getElementById('timeline'));
</script>`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>${library.css}</style>
<style>${STYLE}</style>
</head>
<body>
${parts.join('\n')}
${chart}
</body>
</html>
`;
}
