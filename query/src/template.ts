/**
 * Command-line templates for `dquery sweep`: `{name}` is replaced by the value of parameter
 * `name`, `{{` and `}}` are literal braces. Compiled once (every placeholder checked against the
 * parameter names), then filled for each parameter set. Pure.
 */

/** A template that cannot be used: an unknown placeholder, an unclosed or lone brace. */
export class TemplateError extends Error {
  override name = 'TemplateError';
}

type Part = { text: string } | { param: number };

export class Template {
  private readonly parts: Part[] = [];
  /** The parameter names the template uses, each once. */
  readonly used: string[] = [];

  /**
   * `what` names the template in errors (`--cmd`); `names` are the parameters it may use. Throws
   * TemplateError for a placeholder that is not one of them (naming it and the known ones), a
   * `{` without its `}`, or a lone `}`.
   */
  constructor(
    readonly source: string,
    names: readonly string[],
    what: string,
  ) {
    const index = new Map(names.map((n, i) => [n, i]));
    let text = '';
    for (let i = 0; i < source.length; i++) {
      const c = source[i] as string;
      if ((c === '{' || c === '}') && source[i + 1] === c) {
        text += c;
        i++;
        continue;
      }
      if (c === '}') throw new TemplateError(`${what}: a lone "}" at character ${i + 1}; write "}}" for a literal brace`);
      if (c !== '{') {
        text += c;
        continue;
      }
      const end = source.indexOf('}', i + 1);
      if (end === -1) throw new TemplateError(`${what}: "{" at character ${i + 1} is not closed; write "{{" for a literal brace`);
      const name = source.slice(i + 1, end);
      const param = index.get(name);
      if (param === undefined) {
        throw new TemplateError(
          `${what}: unknown placeholder {${name}}; the parameters are ${names.length === 0 ? '(none)' : names.map((n) => `{${n}}`).join(', ')} ` +
            '(write {{ and }} for literal braces)',
        );
      }
      if (text !== '') this.parts.push({ text });
      text = '';
      this.parts.push({ param });
      if (!this.used.includes(name)) this.used.push(name);
      i = end;
    }
    if (text !== '') this.parts.push({ text });
  }

  /** The template with each placeholder replaced by its value, passed through `quote`. */
  fill(values: readonly string[], quote: (value: string) => string = (v) => v): string {
    let out = '';
    for (const part of this.parts) out += 'text' in part ? part.text : quote(values[part.param] ?? '');
    return out;
  }
}

/**
 * Characters a POSIX shell word may hold unquoted, with no special meaning anywhere in it. Not `=`:
 * a first word `PATH=/tmp/x` would be an assignment, not a command.
 */
const PLAIN = /^[A-Za-z0-9_@%+:,./-]+$/;

/**
 * `value` as one word for /bin/sh: as it is when it holds only plain characters, else in single
 * quotes (a `'` in it written `'\''`). The empty value is `''`.
 */
export function shellQuote(value: string): string {
  return PLAIN.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
