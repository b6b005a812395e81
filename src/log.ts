// One pino logger per process, written to stderr so stdout stays for results
// (JSON from `status --json`, tables, progress). Layers take `log.child({ layer })`.
// Records are one line a person reads, except a mount's away from a terminal (the
// daemon's log file, a service's journal): JSON lines there.
import { writeSync } from 'node:fs';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** `text`: readable lines wherever stderr goes; `auto`: those at a terminal, JSON lines elsewhere. */
export type LogFormat = 'auto' | 'text';

export function createLogger(level: LevelWithSilent = 'warn', format: LogFormat = 'auto'): Logger {
  const text = format === 'text' || process.stderr.isTTY;
  const dest = text ? { write: (line: string) => toStderr(readable(line)) } : pino.destination({ fd: 2, sync: true });
  return pino({ level, base: { pid: process.pid } }, dest);
}

/** A reader that went away (EIO after a hang-up, a closed pipe) must not fail the call that logged. */
function toStderr(text: string): void {
  try {
    writeSync(2, text);
  } catch {
    // nobody is there to read it
  }
}

const LABELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };
/** Fields every record has, or that say nothing at a terminal. */
const OMITTED = new Set(['level', 'time', 'pid', 'msg', 'hostname']);

/** `s3zmount: warning: upload failed; will retry (block=3, err=...)` from one of pino's JSON lines. */
export function readable(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const fields = Object.entries(record)
    .filter(([key]) => !OMITTED.has(key))
    .map(([key, value]) => `${key}=${fieldText(value)}`);
  const label = LABELS[Number(record.level)] ?? 'log';
  return `s3zmount: ${label}: ${String(record.msg ?? '')}${fields.length > 0 ? ` (${fields.join(', ')})` : ''}\n`;
}

function fieldText(value: unknown): string {
  if (typeof value === 'string') return value;
  // A serialized Error: its message says it; the stack is in the JSON log.
  if (typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string') return (value as { message: string }).message;
  return JSON.stringify(value);
}

/** A logger that drops everything: for library use and unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
