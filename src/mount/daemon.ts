// The mount daemon: opens the volume, takes the lease (read-write), builds the
// block stack, replays any journal, mounts FUSE and serves until told to stop.
// States: starting -> serving -> stopping -> stopped.
//   starting  nothing is mounted; any failure undoes what was done and is reported
//   serving   the mount is live; the lease is renewed
//   stopping  (SIGTERM, SIGINT, `unmount`, or the mount removed from outside):
//             dirty blocks are uploaded while the mount is still readable (so
//             `unmount` can show progress), then FUSE is unmounted, the stack
//             closed (a last flush) and the lease released. If S3 cannot be
//             reached, the journal stays in the cache for the next mount.
import path from 'node:path';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import { MAX_DIRECT_BLOCKS, checkMountpoint, mount, type FuseSession } from '../fuse/binding.js';
import { within } from '../fuse/util.js';
import { DeviceOps, DISK_INO } from '../fuse/ops.js';
import { SLAB_BYTES } from '../store/slab-file.js';
import { warmHashing } from '../store/checksum.js';
import type { S3Config } from '../s3/bucket.js';
import { LeaseHolder, describeHolder, heldByDeadProcess, isLive, readLeaseObject } from '../volume/lease.js';
import { openVolume, volumeRef, type Volume } from '../volume/volume.js';
import { LocalDb } from '../store/local-db.js';
import { composeStack, type Stack } from './compose.js';
import { probePutClass, type StorageClass } from '../volume/storage.js';
import { cacheBudget } from './cache-budget.js';
import { writeStopOutcome, type StopOutcome } from './stop-outcome.js';
import { checkCacheDir, defaultCacheRoot } from './cache-dir.js';
import { withArticle } from '../util/words.js';

export type MountMode = 'read-write' | 'read-only' | 'overlay';

export interface DaemonOptions {
  readonly url: string;
  readonly dir: string;
  readonly mode: MountMode;
  readonly cacheDir: string | undefined;
  readonly cacheSize: number;
  readonly force: boolean;
  readonly hydrate: boolean;
  /** Mount over a directory that holds files (refused otherwise). */
  readonly allowNonempty?: boolean;
  readonly s3: S3Config;
  readonly log: Logger;
  readonly leaseTtlMs?: number;
  /** Storage class for new block writes, instead of the descriptor's. */
  readonly storageClass?: StorageClass | undefined;
}

export interface RunningMount {
  readonly volume: Volume;
  readonly cacheDir: string;
  /** What the user should hear about at mount (the mount still works). */
  readonly warnings: readonly string[];
  /** Resolves once the daemon has stopped, with whether every dirty block reached S3. */
  readonly stopped: Promise<StopOutcome>;
  /**
   * Starts stopping: 'flush' uploads every dirty block first, retrying for as long as S3
   * fails (the mount stays up meanwhile); 'now' (also after 'flush' began) gives up on
   * what is left: the journal keeps it for the next read-write mount.
   */
  stop(reason: string, how?: 'flush' | 'now'): Promise<StopOutcome>;
  /** Starts a hydration run (`s3zmount hydrate`, SIGUSR1) unless one is running or the mount is stopping. */
  hydrate(): void;
}

/** What the stats file says about the daemon itself. */
export interface DaemonStatus {
  readonly cacheDir: string;
  readonly stopping: boolean;
  readonly lastError: string | null;
  /** Who took the write lease from this mount (a --force mount elsewhere): two writers share the volume. */
  readonly leaseTakenBy: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * How long a stop waits for the lease's release. Everything is in S3 or in the journal
 * by then; a hung S3 must not hold the daemon up for its timeouts and retries (minutes),
 * and a lease left is no harm: it expires by itself.
 */
const RELEASE_WAIT_MS = 5000;

export async function startDaemon(opts: DaemonOptions): Promise<RunningMount> {
  const log = opts.log.child({ mount: opts.dir });
  const dir = path.resolve(opts.dir);
  // Before the lease and the LIST: a mount that cannot happen must not touch S3.
  await checkMountpoint(dir, { allowNonempty: opts.allowNonempty ?? false });
  // The default cache dir needs the volume's uuid: check its root now, the folder itself once known.
  await checkCacheDir(opts.cacheDir ?? defaultCacheRoot());
  const ref = volumeRef(opts.s3, opts.url, log);
  const undo: Array<() => Promise<unknown>> = [async () => ref.bucket.destroy()];
  const unwind = async () => {
    for (const step of undo.reverse()) await step().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cleanup step failed'));
  };
  const warnings: string[] = [];
  try {
    const volume = await openVolume(ref);
    const d = volume.descriptor;

    let lease: LeaseHolder | undefined;
    // Why the lease could not be released at the stop; null once it was (or none was held).
    let leaseLeft: string | null = null;
    let leaseToken: string | null;
    let writerLive = false;
    if (opts.mode === 'read-write') {
      lease = await LeaseHolder.acquire(ref.bucket, ref.loc, { holder: describeHolder(dir), ttlMs: opts.leaseTtlMs ?? 60_000, force: opts.force, settleMs: 200 }, log);
      const held = lease;
      undo.push(async () => {
        const release = held.release().catch((err: unknown) => {
          leaseLeft = (err as Error).message;
        });
        if (!(await within(release, RELEASE_WAIT_MS))) leaseLeft = `S3 did not answer within ${RELEASE_WAIT_MS / 1000} s`;
        if (leaseLeft !== null) log.warn({ err: leaseLeft }, 'the lease was not released: it expires by itself');
      });
      leaseToken = lease.previousToken;
      // Before anything is written in it: a class the server refuses is one line now, not EIO at the first fsync.
      if (opts.storageClass !== undefined && opts.storageClass !== d.storageClass) {
        await probePutClass(ref.bucket, ref.loc, { storageClass: opts.storageClass, sse: d.sse });
      }
    } else {
      const found = await readLeaseObject(ref.bucket, ref.loc);
      const live = isLive(found) ? found : null;
      if (live !== null && !heldByDeadProcess(live)) {
        if (!opts.force) {
          throw new S3zError('ELEASE', `${volume.url} is mounted read-write by ${live.holder}: its blocks are changing under ${withArticle(opts.mode)} mount; unmount it first, or pass --force to mount anyway`);
        }
        log.warn({ holder: live.holder }, 'a writer holds the lease; this mount may see blocks change under it');
        writerLive = true;
      }
      leaseToken = found?.token ?? null;
    }

    const cacheDir = opts.cacheDir ?? path.join(defaultCacheRoot(), d.uuid);
    if (opts.cacheDir === undefined) await checkCacheDir(cacheDir);
    // Unsynced commits where the folder holds nothing only it has (local-db.ts says why).
    const db = await LocalDb.openForMount(cacheDir, d, opts.mode !== 'overlay');
    undo.push(() => db.close());
    if (db.resetAfterRestart) {
      log.warn({ cacheDir }, 'the machine restarted while this cache was in use: it starts afresh (writes never flushed are dropped; flushed ones are in S3)');
    }

    const budget = cacheBudget(cacheDir, opts.cacheSize, d.blockSize);
    if (budget.warning !== undefined) {
      log.warn({ cacheDir }, budget.warning);
      warnings.push(budget.warning);
    }
    // The hashing threads boot while the stack opens, not on the first GET's check.
    warmHashing();
    const stack = await composeStack({ volume, db, mode: opts.mode, cacheBytes: budget, leaseToken, newToken: lease?.token ?? null, writerLive, log, storageClass: opts.storageClass });
    undo.push(() => stack.top.close());

    let stopping: Promise<StopOutcome> | undefined;
    let abandon = (): void => {};
    const abandoned = new Promise<void>((resolve) => (abandon = resolve));
    let lastError: string | null = null;
    const status = (): DaemonStatus => ({ cacheDir, stopping: stopping !== undefined, lastError, leaseTakenBy: lease?.takenBy ?? null });
    // The stats file can be read before mount() resolves (the kernel serves it once INIT is done).
    let fuseSession: FuseSession | undefined;
    const ops: DeviceOps = new DeviceOps(stack.top, {
      readOnly: opts.mode === 'read-only',
      stats: (): string => JSON.stringify(statsOf(stack, ops, volume, opts.mode, status(), fuseSession), null, 2) + '\n',
      log,
    });
    // DeviceOps.write borrows its data only until it settles, so the payload copies can
    // be lent: reused at once rather than released by the GC (docs/PERFORMANCE.md, session 10).
    const session: FuseSession = await mount(
      dir,
      { readOnly: opts.mode === 'read-only', fsname: volume.url, subtype: 's3zmount', allowNonempty: opts.allowNonempty ?? false, writeBuffers: 'lent' },
      ops.handlers(),
    );
    fuseSession = session;
    undo.push(() => session.unmount());
    // Reads of verified local blocks are answered by libfuse's threads from the slab files.
    const blockCount = volume.descriptor.size / volume.descriptor.blockSize;
    if (stack.useDirectReads !== undefined && blockCount <= MAX_DIRECT_BLOCKS) {
      stack.useDirectReads(session.directReads({ ino: DISK_INO, blockSize: volume.descriptor.blockSize, blockCount, fileBytes: SLAB_BYTES }));
    }
    if (opts.hydrate) stack.startHydration();
    log.info({ volume: volume.url, mode: opts.mode, cacheDir }, 'mounted');

    const stop = (reason: string, how: 'flush' | 'now' = 'flush'): Promise<StopOutcome> => {
      if (how === 'now') abandon();
      stopping ??= (async (): Promise<StopOutcome> => {
        log.info({ reason }, 'stopping');
        // Everything goes up while the mount is still there (ZFS may still read it). S3 may
        // be away: keep trying until it answers, unless told to stop now (the journal
        // keeps what is left, and the next read-write mount uploads it first).
        let clean = false;
        let forced = false;
        for (;;) {
          const flushed = await Promise.race([stack.top.flush().then(() => 'ok' as const, (err: unknown) => err), abandoned.then(() => 'now' as const)]);
          if (flushed === 'ok') clean = true;
          else if (flushed === 'now') forced = true;
          else {
            lastError = (flushed as Error).message;
            log.error({ err: lastError, dirtyBlocks: stack.stats().dirtyBlocks }, 'flush before unmount failed; retrying');
            forced = await Promise.race([abandoned.then(() => true), sleep(2000).then(() => false)]);
          }
          if (clean || forced) break;
        }
        if (session.state !== 'closed') await session.unmount();
        undo.pop(); // the session is done
        if (forced) undo.pop(); // the stack: closing it would wait for S3 again; its journal is committed already
        // No write comes any more. Told to stop now with nothing dirty, all is in S3 all the same.
        const dirtyBlocks = stack.stats().dirtyBlocks;
        if (forced && dirtyBlocks === 0) clean = true;
        if (!clean) log.warn({ dirtyBlocks, cacheDir }, 'stopping now: the journal keeps the blocks not yet in S3');
        await unwind();
        const outcome: StopOutcome = {
          pid: process.pid, clean, dirtyBlocks, dirtyBytes: dirtyBlocks * d.blockSize, lastError, leaseTakenBy: lease?.takenBy ?? null, leaseLeft, at: new Date().toISOString(),
        };
        writeStopOutcome(cacheDir, outcome, log);
        log.info(outcome, clean ? 'stopped: everything is in S3' : 'stopped with blocks not yet in S3');
        return outcome;
      })();
      return stopping;
    };
    void session.closed.then(() => stop('unmounted from outside'));
    return { volume, cacheDir, warnings, stopped: session.closed.then(() => stopping ?? stop('unmounted')), stop, hydrate: () => stack.startHydration() };
  } catch (err) {
    await unwind();
    throw err;
  }
}


export function statsOf(stack: Stack, ops: DeviceOps, volume: Volume, mode: MountMode, status: DaemonStatus, session?: FuseSession): Record<string, unknown> {
  const s = stack.stats();
  // Reads that libfuse's threads answered from the cache files never reach the ops or the
  // cache layer: they are hits and reads all the same.
  const direct = session?.directCounts ?? null;
  const reads = direct?.reads ?? 0;
  const fuse = { ...ops.stats, reads: ops.stats.reads + reads, bytesRead: ops.stats.bytesRead + (direct?.bytes ?? 0), sliceReplies: session?.sliceReplies ?? null, direct };
  return { pid: process.pid, volume: volume.url, mode, ...status, ...s, cache: { ...s.cache, hit: s.cache.hit + reads }, fuse };
}
