// FUSE binding: libfuse3's low-level API (native/s3zfuse.c, through native.ts) as
// typed promises. The C side is mechanism; every policy (defaults, mount options,
// errno choice, unmount strategy) is in src/fuse/. This file is the public entry:
// mount(), and re-exports of what callers use from the other files:
//   types.ts       handler, option and result types
//   options.ts     option and handler checks, defaults
//   native.ts      the addon loader, op codes and vector layouts
//   mountpoint.ts  mount table, mount point checks, detaching
//   session.ts     FuseSession: states, dispatch, replies, unmount
//   encode.ts      reply encoders (handler results to the addon's vectors)
//   signals.ts     unmountOnSignals()
import { constants as osConstants } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { S3zError } from '../errors.js';
import { checkMountpoint, mountError, readMountInfo } from './mountpoint.js';
import { loadNative, WRITE_MODES, type NativeSession } from './native.js';
import { checkHandlers, resolveOptions, type ResolvedOptions } from './options.js';
import { FuseSession, kDispatch, kSetDev, kStart } from './session.js';
import type { FuseHandlers, MountOptions } from './types.js';
import { delay, errnoOf, messageOf } from './util.js';

export type {
  ConnInfo, DirEntry, Entry, FileSlice, FuseHandlers, HandlerName, LentBytes, MountOptions, OpenResult, OpendirResult, SessionState, SetattrChanges, Stat, Statfs,
  UnmountOptions, WriteBuffers,
} from './types.js';
export { FALLOC_FL } from './types.js';
export { ADDON_PATH } from './native.js';
export { checkMountpoint } from './mountpoint.js';
export { FuseSession } from './session.js';
export { unmountOnSignals, type SignalOptions } from './signals.js';
export { DirectReadTable, MAX_DIRECT_BLOCKS, type DirectLayout, type DirectCounts } from './direct-reads.js';
export { errnoOf } from './util.js';

const E = osConstants.errno;

/**
 * Mounts a filesystem served by `handlers` on `dir`.
 * Throws a TypeError at once for invalid options or handlers. Rejects with an
 * S3zError (code EMOUNT, errno ENOENT / ENOTDIR / EBUSY / ENODEV / EACCES / …)
 * saying why the mount failed. Resolves once the kernel's INIT is done (and
 * the init handler, if any, has resolved).
 */
export function mount(dir: string, options: MountOptions, handlers: FuseHandlers): Promise<FuseSession> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty string');
  if (!isMainThread) throw new TypeError('mount() must be called from the main thread');
  const opts = resolveOptions(options);
  const handlerMask = checkHandlers(handlers);
  return mountChecked(dir, opts, handlers, handlerMask);
}

async function mountChecked(dir: string, opts: ResolvedOptions, handlers: FuseHandlers, handlerMask: number): Promise<FuseSession> {
  const target = await checkMountpoint(dir, opts);
  const native = loadNative();
  const mountOpts = [`fsname=${opts.fsname}`, `subtype=${opts.subtype}`];
  if (opts.readOnly) mountOpts.push('ro');
  if (opts.allowOther) mountOpts.push('allow_other');
  if (opts.defaultPermissions) mountOpts.push('default_permissions');
  const session = new FuseSession(native, target, handlers, opts);
  let handle: NativeSession;
  try {
    handle = native.mount(target, ['-o', mountOpts.join(',')], {
      maxWrite: opts.maxWrite,
      maxReadahead: opts.maxReadahead,
      maxBackground: opts.maxBackground,
      congestionThreshold: opts.congestionThreshold,
      threads: opts.threads,
      handlerMask,
      writeMode: WRITE_MODES[opts.writeBuffers],
      spliceWrite: opts.spliceReplies ? 1 : 0,
    }, session[kDispatch]);
  } catch (err) {
    const errno = errnoOf(err) ?? E.EIO;
    const hint = errno === E.EPERM || errno === E.EACCES ? 'no permission to mount (run as root, or install fuse3 for fusermount3)' : messageOf(err);
    throw mountError(dir, errno, hint, err);
  }
  const ready = session[kStart](handle);
  const t = delay(opts.initTimeoutMs);
  try {
    const ok = await Promise.race([ready.then(() => true), t.promise.then(() => false)]);
    if (!ok) throw mountError(dir, E.ETIMEDOUT, `the kernel did not complete FUSE INIT within ${opts.initTimeoutMs} ms`);
  } catch (err) {
    await session.unmount({ timeoutMs: 1000 }).catch(() => undefined);
    if (err instanceof S3zError) throw err;
    throw mountError(dir, errnoOf(err) ?? E.EIO, `the init handler failed: ${messageOf(err)}`, err);
  } finally {
    t.cancel();
  }
  const info = (await readMountInfo()).filter((m) => m.mountpoint === target && m.fstype.startsWith('fuse'));
  session[kSetDev](info[info.length - 1]?.dev);
  return session;
}
