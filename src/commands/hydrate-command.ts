// `s3zmount hydrate <dir> [--wait] [--quiet]`: asks a mount's daemon to pull every
// stored block into its cache, and follows it.
//
// Control channel: a signal, SIGUSR1, to the daemon's pid (read from <dir>/stats),
// with progress read back from the stats file's `hydration` section. Why not the
// alternatives:
//   - a `control` file in the mount dir would change what the mount dir holds
//     (DESIGN §5: `disk` and `stats`), which users and tests rely on;
//   - a unix socket in the cache dir needs a protocol, stale-socket cleanup after a
//     kill -9, and a path within sun_path's 107 bytes;
//   - `unmount` already signals the daemon it finds in the stats file, so this adds
//     no new way to reach it, and the stats file is already what `stats` reads.
// Node opens its inspector on SIGUSR1 unless a listener is installed: the daemon
// installs its listener before the mount (and so its pid in the stats file) exists.
// A start is idempotent: a run in progress is joined. To tell its own run from an
// earlier one, the command notes `hydration.runs` before signalling and waits for it
// to grow (or finds a run already 'running' and follows that).
// States of --wait: following -> done (exit 0) | failed (exit 1: the run failed, the
// mount went away or began to unmount; one line each).
import path from 'node:path';
import type { Context } from './context.js';
import { S3zError, type ErrorCode } from '../errors.js';
import { formatSize } from '../size.js';
import { progressDisplay } from '../progress-display.js';
import type { HydrationStats } from '../mount/hydrate.js';
import { isMounted, mustBeMounted, readStats } from './mount-commands.js';
import { counted } from '../util/words.js';

export interface HydrateCommandOptions {
  wait?: boolean;
  quiet?: boolean;
  /** Poll period of the stats file, ms (tests). */
  pollMs?: number;
}

/** How long a daemon may take to acknowledge SIGUSR1. */
const ACK_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function hydrateCommand(_ctx: Context, dir: string, opts: HydrateCommandOptions): Promise<void> {
  const abs = path.resolve(dir);
  await mustBeMounted(abs);
  const pollMs = opts.pollMs ?? 250;
  let stats = await readStats(abs);
  const before = hydrationOf(stats, abs);
  if (stats.stopping === true) throw new S3zError('EMOUNT', `${abs} is being unmounted`);
  if (before.state !== 'running') {
    try {
      process.kill(stats.pid, 'SIGUSR1');
    } catch (err) {
      throw new S3zError('EMOUNT', `${abs}: cannot reach its daemon (pid ${stats.pid}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    const asked = Date.now();
    for (;;) {
      stats = await follow(abs);
      if (hydrationOf(stats, abs).runs > before.runs) break;
      if (stats.stopping === true) throw new S3zError('EMOUNT', `${abs} is being unmounted`);
      if (Date.now() - asked > ACK_MS) throw new S3zError('EMOUNT', `${abs}: its daemon (pid ${stats.pid}) did not start hydrating within ${ACK_MS / 1000} s`);
      await sleep(50);
    }
  }
  let h = hydrationOf(stats, abs);
  if (!opts.wait) {
    process.stdout.write(`hydrating ${stats.volume}: ${h.done}/${h.total} blocks (${formatSize(h.bytesDone)} of ${formatSize(h.bytesTotal)}) local so far; follow it with "s3zmount stats ${dir}"\n`);
    return;
  }
  const display = progressDisplay({ label: 'hydrate', quiet: opts.quiet ?? false });
  // While the mount still lists its volume, the run's total is only what is listed so far.
  const listing = (s: Record<string, unknown>): boolean => (s.zeroMap as { listing?: boolean } | undefined)?.listing === true;
  if (listing(stats)) display.start(0, 0);
  else display.start(h.total, h.bytesTotal);
  for (;;) {
    if (!listing(stats)) display.setTotal(h.total, h.bytesTotal);
    display.tick(h.done, h.bytesDone);
    if (h.state === 'done') break;
    if (h.state === 'failed') {
      display.done();
      throw new S3zError((h.errorCode ?? 'ES3') as ErrorCode, `hydration of ${abs} failed after ${h.done}/${h.total} blocks: ${h.error ?? 'unknown error'}`);
    }
    if (stats.stopping === true) {
      display.done();
      throw new S3zError('EMOUNT', `${abs} began to unmount before hydration finished (${h.done}/${h.total} blocks local)`);
    }
    await sleep(pollMs);
    stats = await follow(abs, h);
    h = hydrationOf(stats, abs);
  }
  display.done();
  process.stdout.write(
    `hydrated ${stats.volume}: ${counted(h.total, 'block')} (${formatSize(h.bytesTotal)}) local; ` +
      `${h.fetched} fetched, ${h.local} were local already\n`,
  );
}

/** The stats again; the mount going away is one line. */
async function follow(abs: string, h?: HydrationStats): Promise<Awaited<ReturnType<typeof readStats>>> {
  const where = h === undefined ? '' : ` (${h.done}/${h.total} blocks local)`;
  if (!(await isMounted(abs))) throw new S3zError('EMOUNT', `${abs} was unmounted before hydration finished${where}`);
  try {
    return await readStats(abs);
  } catch (err) {
    throw new S3zError('EMOUNT', `${abs}: the mount went away before hydration finished${where}: ${(err as Error).message}`, { cause: err });
  }
}

function hydrationOf(stats: Record<string, unknown>, abs: string): HydrationStats {
  const h = stats.hydration as Partial<HydrationStats> | undefined;
  if (h === undefined || typeof h.runs !== 'number') throw new S3zError('EMOUNT', `${abs}: its daemon is too old to hydrate on demand; remount it`);
  return h as HydrationStats;
}
