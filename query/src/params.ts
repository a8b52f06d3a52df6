/**
 * Parameter files for `dquery sweep`, as Simple Parallel Exec has them: a header line of parameter
 * names, then one parameter set a line, cells separated by `|` (or another separator: `,`, a tab).
 * Pure: lines in, parameter sets out; reading the file is lines.ts's job (UTF-8 checked there).
 *
 * Decisions (SPE says only "every line has as many cells as the headline"):
 * - blank lines (nothing but spaces and tabs) are skipped, and so is a line whose first character
 *   is `#` (a comment), before or after the header; a first value that starts with `#` is written
 *   with a space before it (cells are trimmed);
 * - spaces around a cell are trimmed, and so are tabs unless the tab is the separator: `a | b`
 *   is `a` and `b`. A value cannot begin or end with a space;
 * - there is no quoting: a value cannot hold the separator (choose another with --sep);
 * - an empty cell is an empty value;
 * - a line with another number of cells than the header is refused with its line number.
 */
import { TaskFileError } from './taskfile.js';

/** A parameter name, as the .proto allows it (TaskSpec.params). */
export const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_PARAM_NAME_BYTES = 128;

/** The separators --sep takes, by the name given on the command line. */
export const SEPARATORS: Record<string, string> = { '|': '|', ',': ',', tab: '\t', '\t': '\t', ';': ';' };

/** One parameter set: values in the header's order, and the line it came from. */
export interface ParamSet {
  line: number;
  values: string[];
}

/** Reads a parameter file line by line: first the header, then sets. One per reading of the file. */
export class ParamsParser {
  /** The parameter names, once the header is read. */
  header: string[] | undefined;
  /** The line of the header. */
  headerLine = 0;
  private readonly trim: RegExp;

  constructor(readonly separator = '|') {
    if (separator.length !== 1) throw new TypeError(`a separator is one character, not ${JSON.stringify(separator)}`);
    this.trim = separator === '\t' ? /^ +| +$/g : /^[ \t]+|[ \t]+$/g;
  }

  private cells(text: string): string[] {
    return text.split(this.separator).map((c) => c.replace(this.trim, ''));
  }

  /**
   * The parameter set on `line`, or undefined for the header, a blank line or a comment. Throws
   * TaskFileError (`line N: ...`) for a bad header or a ragged line.
   */
  parse(text: string, line: number): ParamSet | undefined {
    if (text.startsWith('#') || /^[ \t]*$/.test(text)) return undefined;
    if (this.header === undefined) {
      this.header = this.readHeader(text, line);
      this.headerLine = line;
      return undefined;
    }
    const values = this.cells(text);
    if (values.length !== this.header.length) {
      throw new TaskFileError(
        line,
        `${values.length} ${values.length === 1 ? 'cell' : 'cells'}, but the header (line ${this.headerLine}) has ${this.header.length}: ${this.header.join(
          this.separator === '\t' ? ' <tab> ' : ` ${this.separator} `,
        )}${values.length === 1 && this.header.length > 1 ? ` (is the separator ${JSON.stringify(this.separator)}? see --sep)` : ''}`,
      );
    }
    return { line, values };
  }

  private readHeader(text: string, line: number): string[] {
    const names = this.cells(text);
    const seen = new Set<string>();
    for (const name of names) {
      if (!PARAM_NAME.test(name) || Buffer.byteLength(name) > MAX_PARAM_NAME_BYTES) {
        throw new TaskFileError(
          line,
          `the header names a parameter ${JSON.stringify(name)}: a parameter name is letters, digits and _, not starting with a digit, at most ${MAX_PARAM_NAME_BYTES} bytes` +
            (names.length === 1 && text.includes(this.separator === '|' ? ',' : '|') ? ' (is the separator another one? see --sep)' : ''),
        );
      }
      if (seen.has(name)) throw new TaskFileError(line, `the header names the parameter "${name}" twice`);
      seen.add(name);
    }
    return names;
  }
}

/** Every parameter set of `text` (for tests and small inputs; sweep streams its file). */
export function parseParams(text: string, separator = '|'): { header: string[]; sets: ParamSet[] } {
  const parser = new ParamsParser(separator);
  const sets: ParamSet[] = [];
  text.split('\n').forEach((row, i) => {
    const set = parser.parse(row.replace(/\r$/, ''), i + 1);
    if (set !== undefined) sets.push(set);
  });
  if (parser.header === undefined) throw new TaskFileError(1, 'no header line (the parameter names) in the parameter file');
  return { header: parser.header, sets };
}
