/**
 * Error codes shared by the hub, its clients and the wire. The names match the `ErrorCode` enum
 * of proto/dagwork.proto one for one, so a client in any language branches on the same codes.
 */
export const ERROR_CODES = [
  'MALFORMED',
  'UNKNOWN_OPERATION',
  'TOO_LARGE',
  'INVALID_ARGUMENT',
  'INVALID_NAME',
  'CONFLICT',
  'CYCLE',
  'UNKNOWN_TASK',
  'STORE_FAILED',
  'INTERNAL',
  'SHUTTING_DOWN',
  'FORBIDDEN',
  'UNKNOWN_FILE',
  'HASH_MISMATCH',
  'NO_SPACE',
  'UNKNOWN_POOL',
  'REJECTED',
  'BUSY',
  'STANDBY',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A request the hub refuses as a whole; nothing was changed. */
export class DagworkError extends Error {
  override name = 'DagworkError';
  readonly code: ErrorCode;
  /** The task the error is about, when there is one. */
  readonly task: string;

  constructor(code: ErrorCode, message: string, options: { task?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.task = options.task ?? '';
  }
}
