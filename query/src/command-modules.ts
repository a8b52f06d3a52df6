/**
 * Which module adds each dquery command, so that dquery loads only the one a command line names:
 * a shell loop starts dquery once a task, and loading every command's code (task files, sweeps,
 * reports, launch) would be most of its start.
 */
import type { Command } from 'commander';
import type { Context } from './main.js';

export type Register = (program: Command, ctx: Context) => void;

/** The modules that add commands to the program, each loaded on demand. */
export const REGISTER = {
  commands: async (): Promise<Register> => (await import('./commands.js')).registerCommands,
  worker: async (): Promise<Register> => (await import('./worker-commands.js')).registerWorkerCommands,
  addfile: async (): Promise<Register> => (await import('./addfile-command.js')).registerAddfile,
  sweep: async (): Promise<Register> => (await import('./sweep-command.js')).registerSweep,
  status: async (): Promise<Register> => (await import('./status.js')).registerStatus,
  workers: async (): Promise<Register> => (await import('./workers-command.js')).registerWorkers,
  rerun: async (): Promise<Register> => (await import('./rerun-command.js')).registerRerun,
  collect: async (): Promise<Register> => (await import('./collect-command.js')).registerCollect,
  report: async (): Promise<Register> => (await import('./report-command.js')).registerReport,
  graph: async (): Promise<Register> => (await import('./graph-command.js')).registerGraph,
  pool: async (): Promise<Register> => (await import('./pool-command.js')).registerPool,
  launch: async (): Promise<Register> => (await import('./launch-command.js')).registerLaunch,
} as const;

/** The module that adds each command (test/cli.test.ts checks that every command is here, and right). */
export const MODULE_OF: Readonly<Record<string, keyof typeof REGISTER>> = {
  create: 'commands',
  steal: 'worker',
  complete: 'worker',
  fail: 'worker',
  heartbeat: 'worker',
  release: 'worker',
  exit: 'worker',
  retry: 'commands',
  cancel: 'commands',
  list: 'commands',
  lookup: 'commands',
  keygen: 'commands',
  addfile: 'addfile',
  sweep: 'sweep',
  status: 'status',
  workers: 'workers',
  rerun: 'rerun',
  replace: 'rerun',
  delete: 'rerun',
  collect: 'collect',
  gc: 'collect',
  report: 'report',
  graph: 'graph',
  pool: 'pool',
  launch: 'launch',
};

