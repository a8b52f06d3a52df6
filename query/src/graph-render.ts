/** A graph view as text: Graphviz DOT, Mermaid, or JSON. Pure: no I/O. */
import { TASK_STATES, type GraphNode, type GraphView, type TaskState } from '../../proto/src/types.js';

export const GRAPH_FORMATS = ['dot', 'mermaid', 'json'] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

/** One fill colour per state, the same in every format (a legend in `dquery graph --help`). */
export const STATE_COLOURS: Record<TaskState, string> = {
  waiting: '#e0e0e0',
  ready: '#90caf9',
  running: '#ffe082',
  done: '#a5d6a7',
  failed: '#ef9a9a',
  blocked: '#ffcc80',
  cancelled: '#b0bec5',
  verifying: '#ce93d8',
};

/** A task's state; for a group, the state most of its tasks are in (ties: the first in TASK_STATES). */
export function nodeState(node: GraphNode): TaskState {
  if (node.state !== undefined) return node.state;
  let best: TaskState = 'waiting';
  for (const state of TASK_STATES) if (node.counts[state] > node.counts[best]) best = state;
  return best;
}

/** A task: its name. A group: "sweep-a (120: 100 done, 20 failed)", states in TASK_STATES order. */
export function nodeLabel(node: GraphNode): string {
  if (node.state !== undefined) return node.id;
  const counts = TASK_STATES.filter((s) => node.counts[s] > 0).map((s) => `${node.counts[s]} ${s}`);
  return `${node.id} (${node.tasks}: ${counts.join(', ')})`;
}

const isGroup = (node: GraphNode): boolean => node.state === undefined;

export function renderGraph(view: GraphView, format: GraphFormat): string {
  switch (format) {
    case 'dot':
      return graphDot(view);
    case 'mermaid':
      return graphMermaid(view);
    case 'json':
      return `${JSON.stringify(view)}\n`;
  }
}

/**
 * A DOT double-quoted string holding `s` as is: in a label, a backslash starts an escape (\n, \N,
 * \l ...) so it is doubled; a quote is escaped; a line break becomes \n (a centred line); an
 * ampersand is written &amp;, since Graphviz reads &name; and &#N; in labels as entities.
 */
export function dotString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/&/g, '&amp;').replace(/\r\n|\r|\n/g, '\\n')}"`;
}

export function graphDot(view: GraphView): string {
  const lines = ['digraph dagwork {', '  node [shape=box, style="rounded,filled", fontname="Helvetica"];', '  edge [color="#555555", fontname="Helvetica"];'];
  for (const node of view.nodes) {
    const state = nodeState(node);
    const attrs = [`label=${dotString(nodeLabel(node))}`, `fillcolor="${STATE_COLOURS[state]}"`, `tooltip=${dotString(isGroup(node) ? `mostly ${state}` : state)}`];
    if (isGroup(node)) attrs.push('peripheries=2');
    lines.push(`  ${dotString(node.id)} [${attrs.join(', ')}];`);
  }
  const grouped = view.nodes.some(isGroup);
  for (const edge of view.edges) {
    lines.push(`  ${dotString(edge.from)} -> ${dotString(edge.to)}${grouped ? ` [label="${edge.count}"]` : ''};`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/**
 * Mermaid label text in quotes: every character that could end the label or start markup (quote,
 * #, &, <, >, backtick, and % of a %%{...}%% directive) as an entity code; a line break as <br/>.
 */
export function mermaidLabel(s: string): string {
  const escaped = s.replace(/[#"&<>`%]/g, (c) => `#${c.charCodeAt(0)};`).replace(/\r\n|\r|\n/g, '<br/>');
  return `"${escaped}"`;
}

/** Node ids are n1, n2, ... in the view's order, whatever the names hold. */
export function graphMermaid(view: GraphView): string {
  const ids = new Map<string, string>();
  view.nodes.forEach((node, i) => ids.set(node.id, `n${i + 1}`));
  const lines = ['flowchart TD'];
  for (const state of TASK_STATES) lines.push(`  classDef ${state} fill:${STATE_COLOURS[state]},stroke:#555555;`);
  for (const node of view.nodes) {
    const id = ids.get(node.id) as string;
    const label = mermaidLabel(nodeLabel(node));
    lines.push(`  ${id}${isGroup(node) ? `[[${label}]]` : `[${label}]`}:::${nodeState(node)}`);
  }
  const grouped = view.nodes.some(isGroup);
  for (const edge of view.edges) {
    lines.push(`  ${ids.get(edge.from) as string} -->${grouped ? `|${edge.count}|` : ''} ${ids.get(edge.to) as string}`);
  }
  return `${lines.join('\n')}\n`;
}
