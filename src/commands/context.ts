// What every command gets from the global options: a logger and the S3 settings.
// Also the one place where errors become exit codes and one line on stderr.
import { S3zError } from '../errors.js';
import { createLogger, type LogFormat, type Logger } from '../log.js';
import { DEFAULT_S3_CONFIG, type S3Config } from '../s3/config.js';

export interface GlobalOptions {
  endpoint?: string;
  region?: string;
  logLevel: string;
}

export interface Context {
  readonly log: Logger;
  readonly s3: S3Config;
  readonly debug: boolean;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** Bad input found before anything was done: exit 2, like commander's own usage errors. */
const USAGE_CODES = new Set(['EUSAGE', 'EBADURL', 'EBADSIZE']);

export function makeContext(g: GlobalOptions, logFormat: LogFormat = 'text'): Context {
  if (!LEVELS.includes(g.logLevel)) throw new S3zError('EUSAGE', `--log-level must be one of ${LEVELS.join(', ')}`);
  if (g.region === '') throw new S3zError('EUSAGE', '--region is empty (give one such as us-east-1, or leave it out)');
  const endpoint = g.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined);
  if (endpoint !== undefined) checkEndpoint(endpoint);
  const region = g.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || DEFAULT_S3_CONFIG.region);
  return {
    log: createLogger(g.logLevel as 'warn', logFormat),
    s3: { ...DEFAULT_S3_CONFIG, endpoint, region },
    debug: g.logLevel === 'debug' || g.logLevel === 'trace',
  };
}

function checkEndpoint(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new S3zError('EUSAGE', `endpoint "${url}" is not a URL (expected http://HOST:PORT or https://HOST)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new S3zError('EUSAGE', `endpoint "${url}" must start with http:// or https://`);
  }
}

/** Runs a command's body; a failure prints one line (a stack only at debug) and sets the exit code. */
export async function runCommand(debug: () => boolean, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    reportFailure(err, debug());
  }
}

/** The one way a failure reaches the user: one line (a stack only at debug), exit 2 for usage, else 1. */
export function reportFailure(err: unknown, debug: boolean): void {
  const message = err instanceof Error ? err.message : String(err);
  // A message is one line by contract; a stray newline (from a library) must not make two.
  process.stderr.write(`s3zmount: ${message.replace(/\s*\n\s*/g, ' ').trim()}\n`);
  if (debug && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n${causeChain(err)}`);
  process.exitCode = err instanceof S3zError && USAGE_CODES.has(err.code) ? 2 : 1;
}

function causeChain(err: Error): string {
  let out = '';
  for (let c: unknown = err.cause; c instanceof Error; c = c.cause) out += `caused by: ${c.stack ?? c.message}\n`;
  return out;
}
