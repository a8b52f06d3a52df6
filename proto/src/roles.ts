/**
 * CURVE roles: which operations a client key may use. Part of the contract: a client learns from
 * here (and the .proto's header) which endpoint to connect to for an operation.
 */
import type { Operation } from './codec.js';

export const ROLES = ['worker', 'submit', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * The least role allowed each operation; a role includes the ones before it. A Record over every
 * operation, so a new operation does not compile until it is given a role here.
 */
const LEAST_ROLE: Record<Operation, Role> = {
  steal: 'worker',
  complete: 'worker',
  fail: 'worker',
  heartbeat: 'worker',
  release: 'worker',
  workerExit: 'worker',
  status: 'worker',
  lookup: 'worker',
  list: 'worker',
  fileStat: 'worker',
  filePut: 'worker',
  fileGet: 'worker',
  poolList: 'worker',
  graphView: 'worker',
  create: 'submit',
  retry: 'admin',
  cancel: 'admin',
  gc: 'admin',
  poolSet: 'admin',
  poolDelete: 'admin',
  rerun: 'admin',
  replace: 'admin',
  delete: 'admin',
};

export function roleRank(role: Role): number {
  return ROLES.indexOf(role);
}

export function allows(role: Role, op: Operation): boolean {
  return roleRank(role) >= roleRank(LEAST_ROLE[op]);
}

/** The least role that may use `op`. */
export function leastRole(op: Operation): Role {
  return LEAST_ROLE[op];
}
