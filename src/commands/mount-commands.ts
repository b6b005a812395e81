// mount, unmount, stats: commands that work on a mounted volume.
// `mount` runs the daemon in the background by default: it starts itself again
// with --foreground, detached, and waits on a pipe (fd 3) for "ok" or the reason
// it failed, so the user gets exit 0 once the mount is ready or exit 1 and why.
import { spawn } from 'node:child_process';
import { openSync, closeSync, createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from './context.js';
import { S3zError, type ErrorCode } from '../errors.js';
import { parseSize, formatSize } from '../size.js';
import type { MountMode, RunningMount } from '../mount/daemon.js';
import { readStopOutcome, type StopOutcome } from '../mount/stop-outcome.js';
import { defaultCacheRoot, makeDirs } from '../mount/cache-dir.js';
import type { HydrationStats } from '../mount/hydrate.js';
// Not the binding: the parent of a mount only reads the mount table (no session code).
import { readMountInfo } from '../fuse/mountpoint.js';
import { processAlive } from '../util/process.js';
import { keepFreedMemory } from '../util/memory.js';
import { checkStorageClass } from '../volume/storage.js';
import { formatUsd } from '../volume/pricing.js';
import { counted, withArticle } from '../util/words.js';

export interface MountCommandOptions {
  readOnly?: boolean;
  overlay?: boolean;
  cacheDir?: string;
  cacheSize: string;
  hydrate?: boolean;
  force?: boolean;
  allowNonempty?: boolean;
  foreground?: boolean;
  readyFd?: string;
  logFile?: string;
  storageClass?: string;
}

export async function mountCommand(ctx: Context, url: string, dir: string, opts: MountCommandOptions): Promise<void> {
  const mode: MountMode = opts.readOnly ? 'read-only' : opts.overlay ? 'overlay' : 'read-write';
  const cacheSize = parseSize(opts.cacheSize, '--cache-size');
  const storageClass = opts.storageClass === undefined ? undefined : checkStorageClass(opts.storageClass);
  if (storageClass !== undefined && mode !== 'read-write') throw new S3zError('EUSAGE', `--storage-class applies to new writes: ${withArticle(mode)} mount writes nothing to S3`);
  if (!opts.foreground) return background(url, dir, opts);

  // A storage daemon that dies takes the mount with it: a stray rejection (a library's
  // promise nobody awaits, say on a full cache disk) is logged, and serving goes on.
  process.on('unhandledRejection', (reason) => ctx.log.error({ err: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection; still serving'));
  const ready = opts.readyFd === undefined ? undefined : createWriteStream('', { fd: Number(opts.readyFd) });
  let running: RunningMount | undefined;
  // SIGUSR1 is `s3zmount hydrate` (hydrate-command.ts). Installed before the mount
  // exists: until then Node's own SIGUSR1 action would open the inspector.
  process.on('SIGUSR1', () => running?.hydrate());
  keepFreedMemory();
  try {
    // Loaded here, in the daemon only: the parent, `unmount` and `stats` need none of FUSE, LMDB or the SDK.
    const { startDaemon } = await import('../mount/daemon.js');
    running = await startDaemon({
      url, dir, mode, cacheDir: opts.cacheDir, cacheSize, force: opts.force ?? false, hydrate: opts.hydrate ?? false, allowNonempty: opts.allowNonempty ?? false, s3: ctx.s3, log: ctx.log, storageClass,
    });
  } catch (err) {
    // The code travels too, so the waiting parent exits as this process would (2 for usage).
    ready?.end(`error ${err instanceof S3zError ? err.code : 'EMOUNT'} ${(err as Error).message}\n`);
    throw err;
  }
  const message = `mounted ${running.volume.url} on ${path.resolve(dir)} (${mode})`;
  for (const w of running.warnings) {
    if (ready) ready.write(`warn ${w}\n`);
    else process.stderr.write(`s3zmount: warning: ${w}\n`);
  }
  if (ready) ready.end(`ok ${message}\n`);
  else process.stdout.write(`${message}; Ctrl-C or "s3zmount unmount ${dir}" to unmount\n`);
  // SIGTERM (what `unmount` sends) waits for S3 however long it takes, and may come again.
  // A second Ctrl-C, or SIGUSR2 (`unmount --now`), stops at once: the journal keeps what is left.
  let interrupts = 0;
  const r = running;
  process.on('SIGTERM', () => void r.stop('SIGTERM'));
  // The terminal of a --foreground mount closed: stop as unmount would, not die with the
  // mount left broken ("Transport endpoint is not connected"). Nobody reads the output now.
  process.on('SIGHUP', () => {
    for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
    void r.stop('SIGHUP');
  });
  process.on('SIGINT', () => {
    void r.stop('SIGINT', ++interrupts > 1 ? 'now' : 'flush');
    // At a terminal, a stop that waits for S3 (an outage) must not look like a hang.
    if (interrupts === 1 && !ready) {
      setTimeout(() => process.stderr.write('s3zmount: unmounting: waiting for S3 to take what is not there yet; Ctrl-C again to stop at once (the cache dir keeps it for the next mount)\n'), STOP_NOTE_MS).unref();
    }
  });
  process.on('SIGUSR2', () => void r.stop('SIGUSR2', 'now'));
  const outcome = await r.stopped;
  if (!outcome.clean) {
    process.stderr.write(`s3zmount: stopped with ${blocksAndBytes(outcome)} not yet in S3; ${r.cacheDir} keeps them and the next read-write mount uploads them first\n`);
  } else if (!ready) {
    // At a terminal (--foreground); a background daemon's output is its log, and `unmount` says this.
    process.stdout.write(`unmounted ${running.volume.url} from ${path.resolve(dir)}\n`);
  }
  if (!ready) for (const w of outcomeWarnings(outcome)) process.stderr.write(`s3zmount: warning: ${w}\n`);
  // Retry timers of an abandoned upload must not keep the process up.
  process.exit(outcome.clean ? 0 : 1);
}

/** How long a Ctrl-C'd foreground mount stops quietly before it says what it waits for. */
const STOP_NOTE_MS = 2000;

/** libuv threads of the daemon, unless the user set UV_THREADPOOL_SIZE. */
const DAEMON_THREADPOOL = 4;

/**
 * V8 sizes the old generation's first limit from a small heap (~12 MiB live here), so
 * the objects each request leaves behind brought a full mark-compact every ~8 MiB of
 * I/O: ~30 per 256 MiB read, 20-30% of the daemon's CPU on its helper threads. A 64 MiB
 * start makes that about one, for at most that much more memory (docs/PERFORMANCE.md).
 */
const DAEMON_OLD_SPACE_MIB = 64;

function daemonNodeFlags(): string[] {
  const own = process.execArgv;
  return own.some((a) => a.startsWith('--initial-old-space-size') || a.startsWith('--initial-heap-size')) ? own : [...own, `--initial-old-space-size=${DAEMON_OLD_SPACE_MIB}`];
}

/** Starts the daemon detached and waits for it to say ready or why not. */
async function background(url: string, dir: string, opts: MountCommandOptions): Promise<void> {
  const logFile = opts.logFile ?? path.join(defaultCacheRoot(), 'logs', `${path.resolve(dir).replace(/[^A-Za-z0-9._-]+/g, '_')}.log`);
  let logFd: number;
  try {
    if (opts.logFile === undefined) await makeDirs(path.dirname(logFile));
    logFd = openSync(logFile, 'a');
  } catch (err) {
    throw new S3zError('EMOUNT', `cannot write the daemon log ${path.resolve(logFile)}: ${logProblem(err)}; pass --log-file with a writable path, or run with --foreground`, { cause: err });
  }
  const args = process.argv.slice(2).filter((a) => a !== '--foreground');
  const child = spawn(process.execPath, [...daemonNodeFlags(), process.argv[1] ?? '', ...args, '--foreground', '--ready-fd', '3'], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'pipe'],
    // libuv's threadpool (4 threads by default) carries the cache's file I/O and the
    // WebCrypto hashes of blocks over 4 MiB; its size is read once at start, so it
    // is set here or never.
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(DAEMON_THREADPOOL) },
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let said = '';
  pipe.on('data', (d: Buffer) => (said += d.toString()));
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    pipe.on('end', () => resolve(null));
    child.on('exit', (code) => resolve(code ?? 1));
    child.on('error', (err) => reject(new S3zError('EMOUNT', `could not start the mount daemon: ${err.message}`, { cause: err })));
  });
  const lines = said.trim().split('\n');
  for (const w of lines.filter((l) => l.startsWith('warn '))) process.stderr.write(`s3zmount: warning: ${w.slice(5)}\n`);
  const line = lines.filter((l) => !l.startsWith('warn ')).join(' ').trim();
  if (line.startsWith('ok ')) {
    child.unref();
    process.stdout.write(`${line.slice(3)}\n`);
    return;
  }
  const failed = /^error (E[A-Z0-9]+) ([^]*)$/.exec(line);
  if (failed) throw new S3zError(failed[1] as ErrorCode, failed[2] ?? '');
  throw new S3zError('EMOUNT', `the mount daemon exited${exitCode === null ? '' : ` with ${exitCode}`} before it was ready; see ${logFile}`);
}

function logProblem(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'its directory does not exist';
    case 'ENOTDIR':
      return 'a part of its path is not a directory';
    case 'EISDIR':
      return 'it is a directory';
    case 'EROFS':
      return 'its filesystem is read-only';
    case 'EACCES':
    case 'EPERM':
      return 'no permission';
    default:
      return (err as Error).message;
  }
}

interface StatsFile {
  pid: number;
  volume: string;
  mode: string;
  dirtyBlocks: number;
  dirtyBytes: number;
  inflight: number;
  cacheDir?: string;
  lastError?: string | null;
  leaseTakenBy?: string | null;
  [k: string]: unknown;
}

/** The stats file of the s3zmount mount at `dir` (absolute); its pid is what unmount and hydrate signal, so nothing else's is trusted. */
export async function readStats(dir: string): Promise<StatsFile> {
  // The last one listed is the one on top, which a path there reaches.
  const mount = (await readMountInfo()).filter((m) => m.mountpoint === dir).pop();
  if (mount !== undefined && mount.fstype !== 'fuse.s3zmount') throw new S3zError('EMOUNT', `${dir}: not an s3zmount mount (a ${mount.fstype} mount)`);
  const file = path.join(dir, 'stats');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN') throw new S3zError('EMOUNT', `${dir}: the mount's daemon is gone (run "fusermount3 -u ${dir}"; the next mount replays its journal)`, { cause: err });
    throw new S3zError('EMOUNT', `${dir}: not an s3zmount mount (no stats file)`, { cause: err });
  }
  let stats: StatsFile;
  try {
    stats = JSON.parse(text) as StatsFile;
  } catch (err) {
    throw new S3zError('EMOUNT', `${dir}: not an s3zmount mount (its stats file is not s3zmount's)`, { cause: err });
  }
  if (mount === undefined || typeof stats !== 'object' || stats === null || !Number.isInteger(stats.pid) || stats.pid <= 1 || typeof stats.volume !== 'string') {
    throw new S3zError('EMOUNT', `${dir}: not an s3zmount mount (its stats file is not s3zmount's)`);
  }
  return stats;
}

export async function isMounted(dir: string): Promise<boolean> {
  const abs = path.resolve(dir);
  return (await readMountInfo()).some((m) => m.mountpoint === abs);
}

/** Throws, saying which, unless `abs` is a mount point: a path that does not exist is not "not mounted". */
export async function mustBeMounted(abs: string): Promise<void> {
  if (await isMounted(abs)) return;
  const exists = await stat(abs).then(() => true, () => false);
  throw new S3zError('EMOUNT', exists ? `${abs} is not mounted` : `${abs} does not exist`);
}

export async function unmountCommand(_ctx: Context, dir: string, opts: { timeout: string; now?: boolean }): Promise<void> {
  const abs = path.resolve(dir);
  const timeoutMs = Number(opts.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new S3zError('EUSAGE', '--timeout takes a number of seconds');
  await mustBeMounted(abs);
  const stats = await readStats(abs);
  // SIGTERM: upload everything, however long S3 takes (and again if sent again); SIGUSR2: stop now.
  process.kill(stats.pid, opts.now ? 'SIGUSR2' : 'SIGTERM');
  const started = Date.now();
  let lastNote = 0;
  while (processAlive(stats.pid)) {
    if (Date.now() - started > timeoutMs) {
      const now = await readStats(abs).catch(() => stats);
      if (now.dirtyBlocks > 0) {
        throw new S3zError(
          'EMOUNT',
          `${abs}: ${blocksAndBytes(now)} not in S3 yet after ${opts.timeout} s${now.lastError ? ` (last error: ${now.lastError})` : ''}; ` +
            `the mount stays up and keeps retrying, ${now.cacheDir ?? 'its cache dir'} keeps them, and it unmounts by itself once they are in S3: run "s3zmount unmount ${dir}" again to wait for that, ` +
            `or "s3zmount unmount --now ${dir}" to stop and leave them to the next read-write mount`,
        );
      }
      throw new S3zError('EMOUNT', `${abs}: the daemon (pid ${stats.pid}) has not stopped after ${opts.timeout} s; it goes on in the background`);
    }
    if (process.stderr.isTTY && Date.now() - lastNote > 1000 && (await isMounted(abs))) {
      const now = await readStats(abs).catch(() => undefined);
      if (now && now.dirtyBlocks > 0) process.stderr.write(`\runmount: uploading ${blocksAndBytes(now)}...   `);
      lastNote = Date.now();
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (process.stderr.isTTY && lastNote > 0) process.stderr.write('\n');
  if (await isMounted(abs)) throw new S3zError('EMOUNT', `${abs}: the daemon exited but the mount is still there; run "fusermount3 -u ${abs}"`);
  const outcome = stats.cacheDir === undefined ? undefined : readStopOutcome(stats.cacheDir, stats.pid);
  if (outcome === undefined) {
    throw new S3zError('EMOUNT', `${abs}: the daemon (pid ${stats.pid}) exited without confirming that everything is in S3; the next read-write mount replays its journal`);
  }
  if (!outcome.clean) {
    throw new S3zError(
      'EMOUNT',
      `${abs}: unmounted with ${blocksAndBytes(outcome)} not yet in S3; ` +
        `${stats.cacheDir} keeps them and the next read-write mount uploads them first`,
    );
  }
  process.stdout.write(`unmounted ${stats.volume} from ${abs}\n`);
  for (const w of outcomeWarnings(outcome)) process.stderr.write(`s3zmount: warning: ${w}\n`);
}

/** What a stop's outcome has to warn of, whichever command reports it. */
function outcomeWarnings(outcome: StopOutcome): string[] {
  return [
    ...(outcome.leaseLeft ? [`the write lease could not be released (${outcome.leaseLeft}); it expires by itself within a minute; until then a read-write mount on another host needs --force`] : []),
    ...(outcome.leaseTakenBy ? [`the write lease was taken from this mount by ${outcome.leaseTakenBy} (--force): two writers shared the volume, so its pool may be damaged (zpool scrub it)`] : []),
  ];
}

function blocksAndBytes(s: { dirtyBlocks: number; dirtyBytes?: number }): string {
  const bytes = s.dirtyBytes === undefined ? '' : ` (${formatSize(s.dirtyBytes)})`;
  return `${counted(s.dirtyBlocks, 'block')}${bytes}`;
}

export async function statsCommand(_ctx: Context, dir: string, opts: { json?: boolean }): Promise<void> {
  const abs = path.resolve(dir);
  // A plain directory may hold a file called "stats": only a mount point is asked.
  await mustBeMounted(abs);
  const stats = await readStats(abs);
  if (opts.json) {
    process.stdout.write(JSON.stringify(stats, null, 2) + '\n');
    return;
  }
  const s3 = stats.s3 as Record<string, number>;
  const cache = stats.cache as Record<string, number>;
  const direct = (stats.fuse as { direct?: { reads: number } | null } | undefined)?.direct?.reads;
  const hyd = stats.hydration as HydrationStats;
  const zmap = stats.zeroMap as { stored: number; listing?: boolean } | undefined;
  process.stdout.write(
    [
      `volume     ${stats.volume} (${stats.mode}, pid ${stats.pid})`,
      `stored     ${counted(zmap?.stored ?? '?', 'block')} in S3${zmap?.listing ? ' so far: still listing the volume (reads of blocks not listed yet ask S3)' : ''}`,
      `s3         ${s3.get} GET, ${s3.put} PUT, ${s3.delete} DELETE, ${s3.list} LIST, ${s3.head ?? 0} HEAD (~${formatUsd(Number(stats.requestCostUsd ?? 0))} at list prices); in ${formatSize(s3.bytesIn ?? 0)}, out ${formatSize(s3.bytesOut ?? 0)}; ${s3.retries} retries, ${s3.stale} stale, ${s3.corrupt} corrupt`,
      `cache      ${counted(cache.hit ?? 0, 'hit')}${direct ? ` (${direct} answered by libfuse's threads)` : ''}, ${counted(cache.miss ?? 0, 'miss', 'misses')}; ${counted(cache.blocks ?? 0, 'block')} (${formatSize(cache.bytes ?? 0)})`,
      `write-back ${counted(Number(stats.dirtyBlocks), 'dirty block')}, ${counted(Number(stats.inflight), 'upload')} in flight`,
      `hydration  ${hydrationLine(hyd)}`,
      ...(stats.leaseTakenBy ? [`lease      LOST to ${stats.leaseTakenBy} (--force): two writers share the volume; unmount one, then zpool scrub its pool`] : []),
    ].join('\n') + '\n',
  );
}

/** The same words for `stats` whether `mount --hydrate` or `hydrate` started the run. */
function hydrationLine(h: HydrationStats): string {
  const counts = `${h.done}/${h.total} blocks (${formatSize(h.bytesDone ?? 0)} of ${formatSize(h.bytesTotal ?? 0)})`;
  const detail = `${h.fetched} fetched, ${h.local} already local, ${((h.bytesPerSecond ?? 0) / 1e6).toFixed(1)} MB/s`;
  switch (h.state) {
    case 'running':
      return `running: ${counts}; ${detail}`;
    case 'done':
      return `done: ${counts}; ${detail}`;
    case 'failed':
      return `failed after ${counts}: ${h.error ?? 'unknown error'}`;
    default:
      return 'idle (start it with "s3zmount hydrate")';
  }
}
