// The binding's public types: what handlers receive and return, mount and unmount
// options, session states. Plain declarations; validation lives in options.ts and
// in the session's reply encoders.

/** File attributes a handler reports. Times are in milliseconds since the epoch. */
export interface Stat {
  mode: number;
  size: number;
  /** Default: 2 for directories, 1 otherwise. */
  nlink?: number;
  /** Default: the mounting process's uid / gid. */
  uid?: number;
  gid?: number;
  rdev?: number;
  /** 512-byte blocks; default ceil(size / 512). */
  blocks?: number;
  /** Default 4096. */
  blksize?: number;
  /** Default: the time of the mount. */
  atimeMs?: number;
  mtimeMs?: number;
  ctimeMs?: number;
}

/**
 * A read reply served from a file: `length` bytes at `position` of the open regular
 * file `fd`. The binding calls release() exactly once, when the kernel has the bytes
 * or the request ended otherwise (error, abandoned, bad slice); until then the range
 * must not change and `fd` must stay open. A file that cannot supply every byte
 * (closed, shorter than position + length, a read error) answers the read EIO,
 * never short.
 */
export interface FileSlice {
  readonly fd: number;
  readonly position: number;
  readonly length: number;
  release(): void;
}

/**
 * A read reply lent by the handler: `bytes` (at most the request's size) are sent as
 * they are when the reply goes out, on the JS thread, and the binding then calls
 * release() exactly once, as it does for a FileSlice whose request ended otherwise.
 * Until then the bytes must not change.
 */
export interface LentBytes {
  readonly bytes: Uint8Array;
  release(): void;
}

/** Answer to lookup. Timeouts are in seconds. */
export interface Entry {
  ino: number;
  attr: Stat;
  generation?: number;
  /** Default: MountOptions.attrTimeout. */
  attrTimeout?: number;
  /** Default: MountOptions.entryTimeout. */
  entryTimeout?: number;
}

/** What setattr asks to change; only the fields present are to be changed. */
export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atimeMs?: number | 'now';
  mtimeMs?: number | 'now';
  ctimeMs?: number;
}

export interface OpenResult {
  /** File handle passed back with every request on this open file. Default 0. */
  fh?: number;
  /** Bypass the page cache for this open file: reads and writes go to the handlers as issued. */
  directIo?: boolean;
  keepCache?: boolean;
  nonSeekable?: boolean;
}

export interface OpendirResult {
  fh?: number;
  cacheReaddir?: boolean;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Only the file type bits (S_IFMT) are used. */
  mode: number;
  /** Offset of the entry after this one; default: the request's offset + index + 1. */
  offset?: number;
}

export interface Statfs {
  bsize?: number;
  frsize?: number;
  blocks?: number;
  bfree?: number;
  bavail?: number;
  files?: number;
  ffree?: number;
  favail?: number;
  fsid?: number;
  namemax?: number;
}

/** The connection as negotiated with the kernel at INIT. */
export interface ConnInfo {
  protoMajor: number;
  protoMinor: number;
  capable: number;
  want: number;
  maxWrite: number;
  maxRead: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  timeGran: number;
}

export type Awaitable<T> = T | PromiseLike<T>;

/**
 * Request handlers. Each may return a value or a promise; to fail a request,
 * throw (or reject with) an error carrying a numeric `errno` (positive, or
 * negative as Node's system errors have); any other error answers EIO.
 * Inode numbers and file handles are plain numbers (the root is inode 1).
 * A missing handler answers ENOSYS, except: open/opendir succeed with fh 0,
 * flush/release/releasedir succeed, forget is ignored, statfs reports zeros.
 */
export interface FuseHandlers {
  /** After the kernel's INIT; mount() resolves after it (a rejection fails the mount). */
  init?(conn: ConnInfo): Awaitable<void>;
  lookup?(parent: number, name: string): Awaitable<Entry>;
  /** Notification only (no reply); errors are reported to onError. */
  forget?(ino: number, nlookup: number): void;
  getattr?(ino: number, fh: number | undefined): Awaitable<Stat>;
  setattr?(ino: number, changes: SetattrChanges, fh: number | undefined): Awaitable<Stat>;
  open?(ino: number, flags: number): Awaitable<OpenResult | void>;
  /**
   * Return at most `size` bytes; fewer means end of file. Or a FileSlice: the kernel
   * then reads those bytes from the file itself (nothing is copied through JS). Or
   * LentBytes: bytes the handler gets back (release()) once the reply is out.
   */
  read?(ino: number, fh: number, offset: number, size: number): Awaitable<Uint8Array | FileSlice | LentBytes>;
  /**
   * Return the number of bytes written. `data` is a copy of the request's payload; with
   * MountOptions.writeBuffers 'owned' (default) it may be kept, with 'borrowed' or 'lent'
   * it is valid only until the handler settles (then it is detached: length 0).
   */
  write?(ino: number, fh: number, offset: number, data: Buffer, flags: number): Awaitable<number>;
  flush?(ino: number, fh: number): Awaitable<void>;
  fsync?(ino: number, fh: number, datasync: boolean): Awaitable<void>;
  /** `mode` is the fallocate(2) mode, passed through (see FALLOC_FL). */
  fallocate?(ino: number, fh: number, offset: number, length: number, mode: number): Awaitable<void>;
  release?(ino: number, fh: number, flags: number): Awaitable<void>;
  opendir?(ino: number, flags: number): Awaitable<OpendirResult | void>;
  /** Entries from `offset` on (offset 0 is the start); `size` is the reply's byte budget, a hint. */
  readdir?(ino: number, fh: number, offset: number, size: number): Awaitable<readonly DirEntry[]>;
  releasedir?(ino: number, fh: number): Awaitable<void>;
  statfs?(ino: number): Awaitable<Statfs>;
}

export type HandlerName = keyof FuseHandlers;

/** Who owns a write handler's `data` (MountOptions.writeBuffers). */
export type WriteBuffers = 'owned' | 'borrowed' | 'lent';

export interface MountOptions {
  /** Mount read-only (-o ro): the kernel refuses writes with EROFS. */
  readOnly?: boolean;
  /** Let other users than the mounting one use the mount (-o allow_other). */
  allowOther?: boolean;
  /** Let the kernel check permissions from the reported modes (-o default_permissions). */
  defaultPermissions?: boolean;
  /**
   * Mount over a directory that holds files; they are hidden until the unmount.
   * Default false: refused (ENOTEMPTY), as a mount that hides data is usually a wrong path.
   */
  allowNonempty?: boolean;
  /** Source shown in /proc/mounts. Default "s3zmount". */
  fsname?: string;
  /** Type shown as fuse.<subtype>. Default "s3zmount". */
  subtype?: string;
  /** Largest write request, bytes: a multiple of 4096 from 4096 to 1 MiB. Default 1 MiB. */
  maxWrite?: number;
  /** Largest read-ahead, bytes (the kernel may lower it). Default 1 MiB. */
  maxReadahead?: number;
  /** Kernel's limit of background requests (read-ahead, async I/O). Default 64. */
  maxBackground?: number;
  /** Default: 3/4 of maxBackground. */
  congestionThreshold?: number;
  /** Most libfuse worker threads (created on demand). Default 16. */
  threads?: number;
  /** Seconds the kernel may cache attributes. Default 1. */
  attrTimeout?: number;
  /** Seconds the kernel may cache name lookups. Default 1. */
  entryTimeout?: number;
  /**
   * Who owns write payloads. 'owned' (default): the handler gets a copy it may keep
   * (released by the GC). 'borrowed': the handler gets libfuse's own buffer, with no copy,
   * valid only until the handler settles: then it is detached (length 0) and libfuse
   * reuses the memory. Much faster at 1 MiB writes, for handlers that copy whatever they
   * keep (native code must not hold the memory past the handler either). Each borrowed
   * write in flight holds one of the `threads`, and a session whose mount is removed from
   * outside ends only once its borrowed writes' handlers have settled (unmount() answers
   * them after its timeout). 'lent': a copy, as 'owned', valid only until the handler
   * settles, as 'borrowed' (then detached, and its memory reused for the next write);
   * it holds no thread, and the copies stay few and warm instead of waiting for the GC.
   */
  writeBuffers?: WriteBuffers;
  /**
   * Let the kernel splice FileSlice replies from the file into /dev/fuse (no copy
   * in user space), when it offers that. Default true; false copies them through a
   * buffer of libfuse's (for comparison and for file systems that cannot splice).
   */
  spliceReplies?: boolean;
  /** How long mount() waits for the kernel's INIT and the init handler. Default 10 s. */
  initTimeoutMs?: number;
  /** Default timeout of unmount(). Default 10 s. */
  unmountTimeoutMs?: number;
  /**
   * Called with unexpected handler failures: errors without an errno (answered
   * EIO) and results of the wrong shape. Default: process.emitWarning.
   */
  onError?: (err: unknown, op: HandlerName) => void;
}

export interface UnmountOptions {
  /**
   * Bound of each wait: for in-flight requests to finish (those left are
   * answered EIO), then for the kernel to let go of the mount once detached
   * (then the connection is aborted). Default: MountOptions.unmountTimeoutMs.
   */
  timeoutMs?: number;
}

export type SessionState = 'mounting' | 'mounted' | 'unmounting' | 'closed';

/** fallocate(2) mode bits as passed to the fallocate handler. */
export const FALLOC_FL = Object.freeze({
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  NO_HIDE_STALE: 0x04,
  COLLAPSE_RANGE: 0x08,
  ZERO_RANGE: 0x10,
  INSERT_RANGE: 0x20,
  UNSHARE_RANGE: 0x40,
});