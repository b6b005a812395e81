// The one place that loads the FUSE addon (native/s3zfuse.c, built to
// build/Release/s3zfuse.node) and the shapes it speaks: its function table, op
// codes and vector layouts, which must match the C file.
// Invariant: the addon is loaded on first use, so commands without FUSE work without it.
import { S3zError } from '../errors.js';
import { addonPath, loadAddon } from '../util/addon.js';
import type { HandlerName, WriteBuffers } from './types.js';
import { messageOf } from './util.js';
export type NativeSession = { readonly __brand: 'NativeSession' };
export type Dispatch = (op: number, id: number, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown) => void;

export interface NativeConfig {
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  threads: number;
  handlerMask: number;
  /** 0 owned, 1 borrowed, 2 lent (MountOptions.writeBuffers). */
  writeMode: number;
  spliceWrite: number;
}

export interface Native {
  mount(mountpoint: string, args: string[], cfg: NativeConfig, dispatch: Dispatch): NativeSession;
  destroy(session: NativeSession): boolean;
  markExiting(session: NativeSession): void;
  outstanding(session: NativeSession): number;
  umount(path: string, flags: number): void;
  refuse(session: NativeSession, errno: number): void;
  mountFs(source: string, target: string, fstype: string): void;
  replyErr(id: number, errno: number): boolean;
  replyBuf(id: number, data: Uint8Array): boolean;
  /**
   * A read reply from a file: FD_SENT (sent on this thread from the page cache, without
   * waiting; done is never called), FD_QUEUED (sent from libuv's pool; done(errno) once it
   * is out: 0 sent, else the errno the kernel got) or FD_STALE (stale id).
   */
  replyFd(id: number, fd: number, position: number, length: number, done: (errno: number) => void): number;
  replyWrite(id: number, count: number): boolean;
  replyEntry(id: number, attr: Float64Array, generation: number, attrTimeout: number, entryTimeout: number): boolean;
  replyAttr(id: number, attr: Float64Array, timeout: number): boolean;
  replyOpen(id: number, fh: number, flags: number): boolean | 0;
  replyStatfs(id: number, vec: Float64Array): boolean;
  replyDir(id: number, names: string[], vec: Float64Array): number | false;
  /** Direct reads (native/s3zdirect.c; direct-reads.ts checks the arguments). */
  directEnable(session: NativeSession, ino: number, blockSize: number, blockCount: number, fileBytes: number, mapLimit: number, mapMinRead: number): void;
  directFile(session: NativeSession, file: number, fd: number): void;
  directGrant(session: NativeSession, index: number): boolean;
  directRevoke(session: NativeSession, index: number): void;
  directDisable(session: NativeSession): void;
  directDrain(session: NativeSession): Float64Array;
  directCounts(session: NativeSession): Float64Array;
  constants: { MNT_DETACH: number; ATTR_LEN: number; STATFS_LEN: number; FUSE_MAJOR_VERSION: number; FUSE_MINOR_VERSION: number };
}

/** Where `npm run build:native` (node-gyp) puts the addon. */
export const ADDON_PATH = addonPath('s3zfuse');

/** Loads the addon on first use, so that commands without FUSE work without it. */
export function loadNative(): Native {
  try {
    return loadAddon<Native>('s3zfuse');
  } catch (err) {
    throw new S3zError(
      'EMOUNT',
      `the FUSE addon ${ADDON_PATH} could not be loaded (build it with "npm run build:native"; it needs libfuse3-dev and pkg-config): ${messageOf(err)}`,
      { cause: err },
    );
  }
}

// Keep in sync with native/s3zfuse.c.
export const OP = {
  INIT: 1,
  LOOKUP: 2,
  FORGET: 3,
  GETATTR: 4,
  SETATTR: 5,
  OPEN: 6,
  READ: 7,
  WRITE: 8,
  FLUSH: 9,
  FSYNC: 10,
  FALLOCATE: 11,
  RELEASE: 12,
  OPENDIR: 13,
  READDIR: 14,
  RELEASEDIR: 15,
  STATFS: 16,
  ENDED: 17,
} as const;

export const HANDLER_OPS: Readonly<Record<HandlerName, number>> = {
  init: OP.INIT,
  lookup: OP.LOOKUP,
  forget: OP.FORGET,
  getattr: OP.GETATTR,
  setattr: OP.SETATTR,
  open: OP.OPEN,
  read: OP.READ,
  write: OP.WRITE,
  flush: OP.FLUSH,
  fsync: OP.FSYNC,
  fallocate: OP.FALLOCATE,
  release: OP.RELEASE,
  opendir: OP.OPENDIR,
  readdir: OP.READDIR,
  releasedir: OP.RELEASEDIR,
  statfs: OP.STATFS,
};
export const HANDLER_NAMES = Object.keys(HANDLER_OPS) as HandlerName[];

export const OPEN_DIRECT_IO = 1;
export const OPEN_KEEP_CACHE = 2;
export const OPEN_NONSEEKABLE = 4;
export const OPEN_CACHE_READDIR = 8;

// replyFd results
export const FD_STALE = 0;
export const FD_QUEUED = 1;
export const FD_SENT = 2;

// Attribute vector layout (A_* in the C file).
export const ATTR_LEN = 12;
export const STATFS_LEN = 10;
// setattr to_set bits
export const SET_MODE = 1 << 0;
export const SET_UID = 1 << 1;
export const SET_GID = 1 << 2;
export const SET_SIZE = 1 << 3;
export const SET_ATIME = 1 << 4;
export const SET_MTIME = 1 << 5;
export const SET_ATIME_NOW = 1 << 7;
export const SET_MTIME_NOW = 1 << 8;
export const SET_CTIME = 1 << 10;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const MIB = 1024 * 1024;

/** MountOptions.writeBuffers as the addon's writeMode (native/s3zfuse.c: WRITE_OWNED, ...). */
export const WRITE_MODES: Readonly<Record<WriteBuffers, number>> = { owned: 0, borrowed: 1, lent: 2 };
