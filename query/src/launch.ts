/**
 * `dquery launch` without processes: the hosts file read and checked, the --ssh command split into
 * words, and each worker's command line built, every argument quoted for the remote shell.
 * launch-run.ts runs what this plans; launch-command.ts is the command line.
 */

/** One host of the hosts file, with the line it came from (for messages). */
export interface Host {
  /** As written: `host` or `user@host`; what ssh is given. */
  target: string;
  /** The host part, without `user@`: the start of its workers' ids. */
  name: string;
  line: number;
}

/** One dworker to start: one ssh session. */
export interface Unit {
  host: Host;
  /** Its --worker id: HOST-1, HOST-2, ... */
  worker: string;
  /** The ssh command's argv: the program, its options, the host, `--`, the remote command line. */
  argv: string[];
}

/** What a plan is made of. */
export interface PlanOptions {
  /** The ssh program and its options, as split by `splitWords`. */
  ssh: readonly string[];
  /** The dworker program on the hosts, and words before its options (default ['dworker']). */
  dworker: readonly string[];
  /** The hub endpoint given to each worker as --hub, unless `args` has one. */
  hub: string;
  /** dworker options given after `--`, the same for every worker. */
  args: readonly string[];
  /** Workers per host, each with its own id. */
  perHost: number;
  /** true: the remote command runs in the foreground (`exec dworker ...`), for --wait. */
  foreground: boolean;
  /** Where each worker's output goes on its host, in the background: DIR/dworker-ID.log. */
  logDir: string;
}

/** A hosts file that cannot be used; nothing was started. */
export class HostsError extends Error {
  override name = 'HostsError';
}

/** At most this many hosts in a file: beyond it, a typo (a wrong file given) is more likely than a cluster. */
export const MAX_HOSTS = 10_000;

// A user name and a host name, an IPv4 or an IPv6 address (without brackets, as ssh takes it).
// Neither may start with '-' (ssh would take it for an option), and no shell metacharacter passes.
const USER = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9.:-]*$/;

/**
 * The hosts of a hosts file: one a line, `host` or `user@host`; `#` starts a comment, blank lines
 * are skipped. A host listed twice is refused (its workers would share ids), and so is any line
 * that is not a plain host: its number and what is wrong are said, and nothing is returned.
 */
export function parseHosts(text: string): Host[] {
  const hosts: Host[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const hash = (lines[i] as string).indexOf('#');
    const entry = (hash === -1 ? (lines[i] as string) : (lines[i] as string).slice(0, hash)).trim();
    if (entry === '') continue;
    const bad = (why: string): HostsError => new HostsError(`line ${line}: ${JSON.stringify(entry)}: ${why}`);
    if (/\s/.test(entry)) throw bad('one host a line, without spaces');
    const at = entry.lastIndexOf('@');
    const user = at === -1 ? undefined : entry.slice(0, at);
    const name = at === -1 ? entry : entry.slice(at + 1);
    if (user !== undefined && !USER.test(user)) throw bad('not a user name (letters, digits, _, . and -, not first)');
    if (!HOSTNAME.test(name)) throw bad('not a host name or address (letters, digits, ., : and -, not first)');
    const first = seen.get(entry);
    if (first !== undefined) throw bad(`listed already on line ${first} (use --per-host for more workers on a host)`);
    seen.set(entry, line);
    hosts.push({ target: entry, name, line });
    if (hosts.length > MAX_HOSTS) throw new HostsError(`more than ${MAX_HOSTS} hosts`);
  }
  return hosts;
}

/** `word` quoted for a POSIX shell: as it is when it holds only safe characters, else in single quotes. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * `text` split into words as a POSIX shell splits a simple command, without expansions: blanks
 * separate words; single quotes keep everything; double quotes keep everything but `\` before
 * `"`, `\`, `$` and a backquote; a `\` outside quotes keeps the next character. `ssh -p 2222`,
 * `ssh -o 'ProxyJump gate'`. An unclosed quote, or a `\` at the end, is a RangeError.
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw new RangeError(`unclosed ' in ${JSON.stringify(text)}`);
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      for (i++; ; i++) {
        if (i >= text.length) throw new RangeError(`unclosed " in ${JSON.stringify(text)}`);
        const d = text[i] as string;
        if (d === '"') break;
        if (d === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1] as string)) word += text[++i] as string;
        else word += d;
      }
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new RangeError(`a \\ ends ${JSON.stringify(text)}`);
      word += text[++i] as string;
      inWord = true;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The dworker options a launch sets itself for each worker, refused after `--`. */
const SET_PER_WORKER = ['--worker'];

/** Whether dworker `args` name an option (`--hub X` or `--hub=X`). */
function hasOption(args: readonly string[], option: string): boolean {
  return args.some((a) => a === option || a.startsWith(`${option}=`));
}

/**
 * One unit per worker, hosts in file order, each host's workers numbered from 1. The remote
 * command is one string (ssh joins its words with spaces anyway), each word quoted:
 * in the background `nohup dworker ... >DIR/dworker-ID.log 2>&1 </dev/null &`, checked first for
 * a dworker on the PATH (a background start cannot report that it failed); in the foreground
 * `exec dworker ...`, so that the session's exit status is dworker's.
 */
export function plan(hosts: readonly Host[], o: PlanOptions): Unit[] {
  if (o.ssh.length === 0) throw new RangeError('--ssh: no command');
  if (o.dworker.length === 0) throw new RangeError('--dworker: no command');
  if (!Number.isInteger(o.perHost) || o.perHost < 1) throw new RangeError('--per-host: a whole number from 1');
  for (const option of SET_PER_WORKER) {
    if (hasOption(o.args, option)) throw new RangeError(`${option} after --: launch gives each worker its own (HOST-1, HOST-2, ...)`);
  }
  const hub = hasOption(o.args, '--hub') ? [] : ['--hub', o.hub];
  const program = o.dworker.map(shellQuote).join(' ');
  const units: Unit[] = [];
  for (const host of hosts) {
    for (let k = 1; k <= o.perHost; k++) {
      const worker = `${host.name}-${k}`;
      const words = [...hub, '--worker', worker, ...o.args].map(shellQuote).join(' ');
      const remote = o.foreground
        ? `exec ${program} ${words}`
        : `command -v ${shellQuote(o.dworker[0] as string)} >/dev/null || { echo ${shellQuote(`${o.dworker[0] as string}: not found on the PATH of a non-interactive shell`)} >&2; exit 127; }; ` +
          `nohup ${program} ${words} >${shellQuote(`${o.logDir}/dworker-${worker}.log`)} 2>&1 </dev/null &`;
      units.push({ host, worker, argv: [...o.ssh, host.target, '--', remote] });
    }
  }
  return units;
}

/** A command's argv as one line a person could paste into a shell. */
export function commandLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
