/** worker-kit: the public API for programs that talk to a dagwork hub. */
export { Client, HubUnreachableError, REFUSED_AFTER_MS, curveOptions, defaultClientOptions, replyTimeout, type ClientOptions, type CompletionInput, type CurveOptions, type StealOptions, type TaskInput } from './client.js';
export { DagworkError, ERROR_CODES, type ErrorCode } from '../../proto/src/errors.js';
export type {
  Completion,
  CreateResult,
  FileRef,
  FileStat,
  GcResult,
  Param,
  ParamFile,
  ListQuery,
  ListResult,
  LookupResult,
  RerunResult,
  ReplaceResult,
  DeleteResult,
  TaskSummary,
  FailResult,
  GraphStatus,
  Limits,
  Status,
  LeasedTask,
  StateCounts,
  StealResult,
  TaskOutcome,
  TaskRecord,
  TaskResult,
  TaskSpecInput,
  TaskState,
} from '../../proto/src/types.js';
export { runWorker, Worker, PermanentError, WorkerFault, type Handler, type HandlerResult, type TaskContext, type WorkerOptions, type WorkerSummary, type StopReason } from './worker.js';
export { shellHandler, type ShellFiles, type ShellHandler, type ShellOptions } from './shell.js';
export { FALLBACK_LIMITS, effectiveLimits, nextBatchSize, type HubLimits } from './limits.js';
export { downloadFile, hashFile, uploadFile, type FileOps, type UploadResult } from './files.js';
export { DEFAULT_CACHE_MAX_BYTES, defaultCacheDir, FileCache, type CacheClock, type CacheOptions, type CacheStats, type CachedFile } from './cache.js';
export { fetchInputs, paramEnv, paramsObject, uploadOutputs, whileHubAway, HUB_RETRY, type FetchOptions, type InputReport, type PreparedInputs, type UploadedOutput } from './task-files.js';
