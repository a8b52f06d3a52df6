import type { FileRef, Param, ParamFile } from './types.js';

/**
 * Readers of the fields of messages protobufjs decoded (plain objects, no fromObject/toObject
 * copies: they cost more than the decoding itself), and the writer's rule for defaults. Shared by
 * the wire codec and the hub's stored-record codec.
 */
export type Obj = Record<string, unknown>;

export const EMPTY = new Uint8Array(0);
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');
/** int64 fields decode as Long objects; every time and count we send or store fits in a double. */
export const num = (v: unknown): number =>
  typeof v === 'number' ? v : typeof (v as { toNumber?: unknown } | null)?.toNumber === 'function' ? (v as { toNumber(): number }).toNumber() : Number(v ?? 0);
export const bool = (v: unknown): boolean => v === true;
export const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array && v.length > 0 ? v : EMPTY);
export const list = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);
export const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(str) : []);
/** A list field that decoded empty, shared (a million tasks without params hold one array, not a million). */
export const NONE: never[] = [];
export const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' ? (v as Obj) : undefined);
/**
 * Fields at their default are left out, as proto3 would: smaller messages, and nothing for the
 * decoder to allocate (an empty bytes field still costs a Buffer).
 */
export const unlessEmpty = <T extends string | number | Uint8Array>(v: T): T | undefined => (v === 0 || v === '' || (v instanceof Uint8Array && v.length === 0) ? undefined : v);

/** Lists left out when empty, as proto3 would. */
export const unlessNone = <T>(v: readonly T[]): readonly T[] | undefined => (v.length === 0 ? undefined : v);

// The list fields of a task (params, files): empty ones share NONE.
export const paramsFrom = (v: unknown): Param[] => (Array.isArray(v) && v.length > 0 ? list(v).map((p) => ({ name: str(p.name), value: str(p.value) })) : NONE);
export const fileRefsFrom = (v: unknown): FileRef[] =>
  Array.isArray(v) && v.length > 0 ? list(v).map((f) => ({ name: str(f.name), sha256: str(f.sha256), size: num(f.size), executable: bool(f.executable) })) : NONE;
export const paramFilesFrom = (v: unknown): ParamFile[] => (Array.isArray(v) && v.length > 0 ? list(v).map((f) => ({ name: str(f.name), param: str(f.param) })) : NONE);
export const namesFrom = (v: unknown): string[] => (Array.isArray(v) && v.length > 0 ? strings(v) : NONE);
