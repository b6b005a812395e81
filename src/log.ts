// One pino logger per process, written to stderr so stdout stays for results
// (JSON from `status --json`, tables, progress). Layers take `log.child({ layer })`.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'warn'): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: for library use and unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
