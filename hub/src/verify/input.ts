/**
 * The JSON a verifier reads (see PoolSetRequest in the .proto): the task as a submitter wrote it,
 * in snake_case as in the .proto; bytes as UTF-8 text when they are valid UTF-8, else base64 under
 * NAME_base64. A result verifier's also holds the completion: attempt, worker, result and the
 * output files with their paths in the hub's file store.
 */
import type { FileRef, TaskSpec } from '../../../proto/src/types.js';
import type { ResultToVerify } from '../graph/graph.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** `{ [key]: text }` for UTF-8 bytes, `{ [key_base64]: base64 }` otherwise. */
function bytesField(key: string, bytes: Uint8Array): Record<string, string> {
  try {
    return { [key]: utf8.decode(bytes) };
  } catch {
    return { [`${key}_base64`]: Buffer.from(bytes).toString('base64') };
  }
}

function taskFields(spec: TaskSpec): Record<string, unknown> {
  const params: Record<string, string> = {};
  for (const p of spec.params) params[p.name] = p.value;
  return {
    name: spec.name,
    pool: spec.pool,
    deps: spec.deps,
    ...bytesField('payload', spec.payload),
    priority: spec.priority,
    max_attempts: spec.maxAttempts,
    lease_ms: spec.leaseMs,
    params,
    inputs: spec.inputs.map(fileFields),
    outputs: spec.outputs,
    param_files: spec.paramFiles.map((f) => ({ name: f.name, param: f.param })),
    barrier: spec.barrier,
    after: spec.afterEnded ? 'ended' : 'done',
  };
}

function fileFields(file: FileRef): Record<string, unknown> {
  return { name: file.name, sha256: file.sha256, size: file.size, executable: file.executable };
}

/** What a job verifier reads: the task a create would add. */
export function jobInput(spec: TaskSpec): string {
  return `${JSON.stringify(taskFields(spec))}\n`;
}

/** What a result verifier reads: the task, its completion, and where each output file is held. */
export function resultInput(v: ResultToVerify, pathOf: (sha256: string) => string): string {
  const fields = {
    ...taskFields(v.spec),
    // The task's declared output names are in `outputs` below, with their files.
    outputs: v.outputs.map((f) => ({ ...fileFields(f), path: pathOf(f.sha256) })),
    attempt: v.attempt,
    worker: v.worker,
    ...bytesField('result', v.result),
  };
  return `${JSON.stringify(fields)}\n`;
}
