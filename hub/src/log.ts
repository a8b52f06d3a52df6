/** A small leveled logger writing one line per event to stderr. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

export function createLogger(level: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const at =
    (name: LogLevel) =>
    (message: string): void => {
      if (LOG_LEVELS.indexOf(name) <= threshold) write(`${new Date().toISOString()} ${name.padEnd(5)} ${message}\n`);
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };

/**
 * A logger for what peers cause (refused requests, undeliverable replies): at most `perSecond`
 * lines a second, then one line saying how many were left out, so that a hostile or broken client
 * cannot fill the disk through the hub's log.
 */
export function rateLimited(log: Logger, perSecond: number, clock: () => number = Date.now): (message: string) => void {
  let second = 0;
  let written = 0;
  let suppressed = 0;
  return (message) => {
    const now = Math.floor(clock() / 1000);
    if (now !== second) {
      if (suppressed > 0) log.warn(`${suppressed} more warnings like these in the last second were left out`);
      second = now;
      written = 0;
      suppressed = 0;
    }
    if (written < perSecond) {
      written++;
      log.warn(message);
    } else {
      suppressed++;
    }
  };
}
