// How a daemon stopped, left in <cacheDir>/last-stop.json for `unmount` to read
// after the process is gone. Its own module so that `unmount` and `stats` load
// none of the daemon (FUSE, LMDB, the S3 SDK).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';

/** How a daemon stopped; also written to <cacheDir>/last-stop.json for `unmount`. */
export interface StopOutcome {
  readonly pid: number;
  /** Every block written through the mount is in S3. */
  readonly clean: boolean;
  readonly dirtyBlocks: number;
  readonly dirtyBytes: number;
  readonly lastError: string | null;
  /** Who took the write lease while mounted (absent in files of older versions). */
  readonly leaseTakenBy?: string | null;
  /** Why the write lease could not be released at the stop (it then expires by itself); null when it was. */
  readonly leaseLeft?: string | null;
  readonly at: string;
}

export const STOP_FILE = 'last-stop.json';

export function writeStopOutcome(cacheDir: string, outcome: StopOutcome, log: Logger): void {
  try {
    writeFileSync(path.join(cacheDir, STOP_FILE), JSON.stringify(outcome) + '\n');
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not record how the daemon stopped');
  }
}

/** The outcome a daemon left in its cache dir, if that daemon was `pid`. */
export function readStopOutcome(cacheDir: string, pid: number): StopOutcome | undefined {
  try {
    const o = JSON.parse(readFileSync(path.join(cacheDir, STOP_FILE), 'utf8')) as StopOutcome;
    return o.pid === pid ? o : undefined;
  } catch {
    return undefined;
  }
}
