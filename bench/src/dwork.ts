/**
 * The dwork peer (github.com/frobnitzem/dwork, a C++ hub of the same shape): where its build is,
 * and a small client of its hub written from its proto/TaskMsg.proto, which is loaded at run time
 * from the user's checkout. UNVERIFIED against a live dwork: no dwork build was at hand when this
 * was written; it follows dwork's src/dhub.cc and src/dquery.cc (one protobuf QueryMsg a ZeroMQ
 * message, REQ to the hub's ROUTER).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import protobuf from 'protobufjs';
import { Request } from 'zeromq';

/** dwork's hub binary and its .proto, found. */
export interface DworkBuild {
  dhub: string;
  proto: string;
}

/** What the search looks at: the environment and the file system (a test gives its own). */
export interface Probe {
  env: NodeJS.ProcessEnv;
  /** True for an existing regular file that is an ELF executable. */
  isElf(path: string): boolean;
  exists(path: string): boolean;
}

export const SYSTEM: Probe = {
  env: process.env,
  isElf(path) {
    try {
      if (!statSync(path).isFile()) return false;
      const fd = openSync(path, 'r');
      const magic = Buffer.alloc(4);
      readSync(fd, magic, 0, 4, 0);
      closeSync(fd);
      return magic.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    } catch {
      return false;
    }
  },
  exists: existsSync,
};

/**
 * dwork's `dhub`: $DWORK_DHUB, or else the first `dhub` on the PATH that is a native binary
 * (dagwork's own `dhub` is a Node script, and is passed over); its .proto: $DWORK_PROTO. Either
 * missing: why, to print as the reason the peer is skipped.
 */
export function findDwork(probe: Probe = SYSTEM): DworkBuild | { skip: string } {
  const named = probe.env.DWORK_DHUB;
  let dhub: string | undefined;
  if (named !== undefined && named !== '') {
    if (!probe.isElf(named)) return { skip: `DWORK_DHUB=${named} is not a native executable` };
    dhub = named;
  } else {
    dhub = (probe.env.PATH ?? '')
      .split(delimiter)
      .filter((dir) => dir !== '')
      .map((dir) => join(dir, 'dhub'))
      .find((path) => probe.isElf(path));
    if (dhub === undefined) return { skip: "no dwork build: no native `dhub` on the PATH and DWORK_DHUB unset (dagwork's own dhub is not it)" };
  }
  const proto = probe.env.DWORK_PROTO;
  if (proto === undefined || proto === '') return { skip: `found dwork's hub ${dhub} but DWORK_PROTO is unset (the path of proto/TaskMsg.proto in its checkout)` };
  if (!probe.exists(proto)) return { skip: `DWORK_PROTO=${proto} does not exist` };
  return { dhub, proto };
}

interface Task {
  name: string;
  origin: string;
  pred?: Record<string, string>[];
}

interface Query {
  type: number;
  task?: Task[];
  name?: string;
  n?: number;
  location?: string;
}

/** dwork's QueryMsg over a REQ socket: create, steal, complete, status. */
export class DworkClient {
  private constructor(
    private readonly socket: Request,
    private readonly message: protobuf.Type,
    private readonly types: Record<string, number>,
    /** Dep's name field: `name` in current dwork, `id` in older .protos. */
    private readonly depField: string,
    /** Who steals and completes (dwork's "location"; its tools send the hostname). */
    private readonly host: string,
  ) {}

  static async open(protoPath: string, endpoint: string, host: string, timeoutMs = 60_000): Promise<DworkClient> {
    const root = await protobuf.load(protoPath);
    const message = root.lookupType('dwork.QueryMsg');
    const types = root.lookupEnum('dwork.QueryMsg.Type').values;
    for (const needed of ['Create', 'Steal', 'Complete', 'Transfer', 'NotFound', 'Exit', 'OK', 'Error']) {
      if (types[needed] === undefined) throw new Error(`${protoPath}: QueryMsg.Type has no ${needed} (an older dwork; this client speaks the one with Complete)`);
    }
    const dep = root.lookupType('dwork.TaskMsg.Dep');
    const depField = dep.fields.name !== undefined ? 'name' : 'id';
    const socket = new Request({ receiveTimeout: timeoutMs, sendTimeout: timeoutMs, linger: 0 });
    socket.connect(endpoint);
    return new DworkClient(socket, message, types, depField, host);
  }

  private type(name: string): number {
    return this.types[name] as number;
  }

  private async call(query: Query): Promise<Query> {
    await this.socket.send(this.message.encode(query).finish());
    const [reply] = await this.socket.receive();
    const decoded = this.message.decode(reply as Buffer) as unknown as Query;
    if (decoded.type === this.type('Error')) throw new Error('dwork hub answered Error');
    return decoded;
  }

  async create(tasks: { name: string; deps?: readonly string[] }[]): Promise<void> {
    const task = tasks.map((t) => ({ name: t.name, origin: this.host, pred: (t.deps ?? []).map((d) => ({ [this.depField]: d })) }));
    await this.call({ type: this.type('Create'), task });
  }

  /** Up to `n` ready tasks; `exit` once the hub has no active task left. */
  async steal(n: number): Promise<{ names: string[]; exit: boolean }> {
    const reply = await this.call({ type: this.type('Steal'), location: this.host, n });
    return { names: (reply.task ?? []).map((t) => t.name), exit: reply.type === this.type('Exit') };
  }

  async complete(names: readonly string[]): Promise<void> {
    await this.call({ type: this.type('Complete'), location: this.host, task: names.map((name) => ({ name, origin: this.host })) });
  }

  /** dwork's status: the OK query, answered with a line of counts. */
  async status(): Promise<string> {
    return (await this.call({ type: this.type('OK') })).name ?? '';
  }

  close(): void {
    this.socket.close();
  }
}
