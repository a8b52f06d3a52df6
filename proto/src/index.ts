/**
 * The TypeScript side of proto/dagwork.proto: the contract's types, error codes, codec, task rules,
 * roles and key files. Everything else (hub, query, worker-kit) stands on it; it imports none of them.
 */
export { ERROR_CODES, DagworkError, type ErrorCode } from './errors.js';
export * from './types.js';
export { decodeReply, decodeRequest, encodeReply, encodeRequest, type Operation, type Reply, type Request, type StealArgs, type WireError } from './codec.js';
export { checkName, checkWorker, DEFAULT_MAX_MESSAGE_BYTES, defaultLimits, defaultSpecLimits, dependencyOrder, normalizeSpec, sameSpec, DEFAULT_POOL, type SpecLimits } from './spec.js';
export { allows, ROLES, type Role } from './roles.js';
export { formatKeyFile, formatPublicKeyFile, readKeyFile, type KeyPair } from './keys.js';
export { VIEW_DEFAULT_DEPTH, VIEW_DEFAULT_NODES, VIEW_MAX_DEPTH, VIEW_MAX_NODES } from './graph-view.js';
