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
import { checkMountpoint, mount, type FuseSession } from '../fuse/binding.js';
import { DeviceOps } from '../fuse/ops.js';
import type { S3Config } from '../s3/bucket.js';
import { LeaseHolder, describeHolder, heldByDeadProcess, isLive, readLeaseObject } from '../volume/lease.js';
import { openVolume, volumeRef, type Volume } from '../volume/volume.js';
import { LocalDb, defaultCacheRoot } from '../store/local-db.js';
import { composeStack, type Stack } from './compose.js';
import { checkCacheDir } from './cache-dir.js';

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
}

export interface RunningMount {
  readonly volume: Volume;
  readonly stopped: Promise<void>;
  stop(reason: string): Promise<void>;
}

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
  try {
    const volume = await openVolume(ref);
    const d = volume.descriptor;

    let lease: LeaseHolder | undefined;
    let leaseToken: string | null;
    if (opts.mode === 'read-write') {
      lease = await LeaseHolder.acquire(ref.bucket, ref.loc, { holder: describeHolder(dir), ttlMs: opts.leaseTtlMs ?? 60_000, force: opts.force, settleMs: 200 }, log);
      const held = lease;
      undo.push(() => held.release());
      leaseToken = lease.previousToken;
    } else {
      const found = await readLeaseObject(ref.bucket, ref.loc);
      const live = isLive(found) ? found : null;
      if (live !== null && !heldByDeadProcess(live)) {
        if (!opts.force) {
          throw new S3zError('ELEASE', `${volume.url} is mounted read-write by ${live.holder}: its blocks are changing under a ${opts.mode} mount; unmount it first, or pass --force to mount anyway`);
        }
        log.warn({ holder: live.holder }, 'a writer holds the lease; this mount may see blocks change under it');
      }
      leaseToken = found?.token ?? null;
    }

    const cacheDir = opts.cacheDir ?? path.join(defaultCacheRoot(), d.uuid);
    if (opts.cacheDir === undefined) await checkCacheDir(cacheDir);
    const db = LocalDb.open(cacheDir, d);
    undo.push(() => db.close());

    const stack = await composeStack({ volume, db, mode: opts.mode, cacheSize: opts.cacheSize, leaseToken, newToken: lease?.token ?? null, log });
    undo.push(() => stack.top.close());

    const ops: DeviceOps = new DeviceOps(stack.top, { readOnly: opts.mode === 'read-only', stats: (): string => JSON.stringify(statsOf(stack, ops, volume, opts.mode), null, 2) + '\n', log });
    const session: FuseSession = await mount(dir, { readOnly: opts.mode === 'read-only', fsname: volume.url, subtype: 's3zmount', allowNonempty: opts.allowNonempty ?? false }, ops.handlers());
    undo.push(() => session.unmount());
    if (opts.hydrate) stack.startHydration();
    log.info({ volume: volume.url, mode: opts.mode, cacheDir }, 'mounted');

    let stopping: Promise<void> | undefined;
    const stop = (reason: string): Promise<void> => {
      stopping ??= (async () => {
        log.info({ reason }, 'stopping');
        try {
          if (session.state === 'mounted') await stack.top.flush();
        } catch (err) {
          log.error({ err: (err as Error).message }, 'flush before unmount failed; the journal keeps the data');
        }
        if (session.state !== 'closed') await session.unmount();
        undo.pop(); // the session is done
        await unwind();
      })();
      return stopping;
    };
    void session.closed.then(() => stop('unmounted from outside'));
    return { volume, stopped: session.closed.then(() => stopping), stop };
  } catch (err) {
    await unwind();
    throw err;
  }
}


export function statsOf(stack: Stack, ops: DeviceOps, volume: Volume, mode: MountMode): Record<string, unknown> {
  const s = stack.stats();
  return { pid: process.pid, volume: volume.url, mode, ...s, fuse: ops.stats };
}
