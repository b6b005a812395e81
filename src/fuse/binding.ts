// FUSE binding: the only module that loads the native addon (native/s3zfuse.c,
// built to build/Release/s3zfuse.node) and exposes libfuse3's low-level API as
// typed promises. The C side is mechanism; every policy (defaults, mount
// options, errno choice, unmount strategy) is here.
//
// Session states: mounting -> mounted -> unmounting -> closed.
//   mounting    the kernel mount exists; waiting for the kernel's INIT (and the
//               init handler). mount() resolves on leaving this state.
//   mounted     requests are dispatched to the handlers; every request id
//               handed to a handler is in #pending until it is answered.
//   unmounting  unmount(): wait (bounded) for #pending to drain, answer what is
//               left with EIO, detach the mount, wait (bounded) for the loop to
//               end, else abort the connection through fusectl.
//   closed      the native loop ended (also after `fusermount3 -u` from
//               outside): every pending request was answered, native.destroy()
//               ran, `closed` is resolved.
// Invariants
//   - every request id is answered exactly once: a handler settling after its
//     request was abandoned is ignored (the native side refuses stale ids too);
//   - native.destroy() runs only after every request was answered;
//   - while a session is live, a process 'exit' detaches its mount, so a normal
//     exit never leaves a dead mount (after a crash: `fusermount3 -u DIR`);
//   - no signal handler is installed unless unmountOnSignals() is called.
// Hazard (any FUSE server in one process): the process serving a mount must not
// use synchronous fs calls on it, nor spawn children while it holds files of it
// open: exec closes them in the child, the kernel sends FLUSH, and the JS thread
// that must answer is blocked in spawn until the exec completes. Once unmount()
// gives up waiting, or the process exits, requests are answered without JS.
import { execFile, spawnSync } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, readFile, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { S3zError } from '../errors.js';

const E = osConstants.errno;

// ---------------------------------------------------------------------------
// Public types

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

type Awaitable<T> = T | PromiseLike<T>;

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
  /** Return at most `size` bytes; fewer means end of file. */
  read?(ino: number, fh: number, offset: number, size: number): Awaitable<Uint8Array>;
  /**
   * Return the number of bytes written. `data` is a copy of the request's payload; with
   * MountOptions.writeBuffers 'owned' (default) it may be kept, with 'borrowed' it is valid
   * only until the handler settles (then it is detached: length 0).
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
   * them after its timeout).
   */
  writeBuffers?: 'owned' | 'borrowed';
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

// ---------------------------------------------------------------------------
// Native addon

type NativeSession = { readonly __brand: 'NativeSession' };
type Dispatch = (op: number, id: number, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown) => void;

interface NativeConfig {
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  threads: number;
  handlerMask: number;
  borrowWrites: number;
}

interface Native {
  mount(mountpoint: string, args: string[], cfg: NativeConfig, dispatch: Dispatch): NativeSession;
  destroy(session: NativeSession): boolean;
  markExiting(session: NativeSession): void;
  outstanding(session: NativeSession): number;
  umount(path: string, flags: number): void;
  refuse(session: NativeSession, errno: number): void;
  mountFs(source: string, target: string, fstype: string): void;
  replyErr(id: number, errno: number): boolean;
  replyBuf(id: number, data: Uint8Array): boolean;
  replyWrite(id: number, count: number): boolean;
  replyEntry(id: number, attr: Float64Array, generation: number, attrTimeout: number, entryTimeout: number): boolean;
  replyAttr(id: number, attr: Float64Array, timeout: number): boolean;
  replyOpen(id: number, fh: number, flags: number): boolean | 0;
  replyStatfs(id: number, vec: Float64Array): boolean;
  replyDir(id: number, names: string[], vec: Float64Array): number | false;
  constants: { MNT_DETACH: number; ATTR_LEN: number; STATFS_LEN: number; FUSE_MAJOR_VERSION: number; FUSE_MINOR_VERSION: number };
}

/** Package root: this file is dist/fuse/binding.js, two levels below it. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where `npm run build:native` (node-gyp) puts the addon. */
export const ADDON_PATH = join(PACKAGE_ROOT, 'build', 'Release', 's3zfuse.node');

let nativeModule: Native | undefined;

/** Loads the addon on first use, so that commands without FUSE work without it. */
function loadNative(): Native {
  if (nativeModule !== undefined) return nativeModule;
  const require = createRequire(import.meta.url);
  try {
    nativeModule = require(ADDON_PATH) as Native;
  } catch (err) {
    throw new S3zError(
      'EMOUNT',
      `the FUSE addon ${ADDON_PATH} could not be loaded (build it with "npm run build:native"; it needs libfuse3-dev and pkg-config): ${messageOf(err)}`,
      { cause: err },
    );
  }
  return nativeModule;
}

// Keep in sync with native/s3zfuse.c.
const OP = {
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

const HANDLER_OPS: Readonly<Record<HandlerName, number>> = {
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
const HANDLER_NAMES = Object.keys(HANDLER_OPS) as HandlerName[];

const OPEN_DIRECT_IO = 1;
const OPEN_KEEP_CACHE = 2;
const OPEN_NONSEEKABLE = 4;
const OPEN_CACHE_READDIR = 8;

// Attribute vector layout (A_* in the C file).
const ATTR_LEN = 12;
const STATFS_LEN = 10;
// setattr to_set bits
const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4;
const SET_MTIME = 1 << 5;
const SET_ATIME_NOW = 1 << 7;
const SET_MTIME_NOW = 1 << 8;
const SET_CTIME = 1 << 10;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const MIB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Validation (before any native call)

const OPTION_KEYS = new Set<string>([
  'readOnly', 'allowOther', 'defaultPermissions', 'fsname', 'subtype', 'maxWrite', 'maxReadahead',
  'maxBackground', 'congestionThreshold', 'threads', 'attrTimeout', 'entryTimeout', 'initTimeoutMs',
  'unmountTimeoutMs', 'onError', 'writeBuffers', 'allowNonempty',
]);

interface ResolvedOptions {
  readOnly: boolean;
  allowOther: boolean;
  defaultPermissions: boolean;
  allowNonempty: boolean;
  fsname: string;
  subtype: string;
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  congestionThreshold: number;
  threads: number;
  attrTimeout: number;
  entryTimeout: number;
  initTimeoutMs: number;
  unmountTimeoutMs: number;
  writeBuffers: 'owned' | 'borrowed';
  onError: (err: unknown, op: HandlerName) => void;
}

function checkInt(name: string, v: unknown, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new TypeError(`options.${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkSeconds(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new TypeError(`options.${name} must be a number of seconds >= 0, got ${String(v)}`);
  }
  return v;
}

function checkBool(name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new TypeError(`options.${name} must be a boolean`);
  return v;
}

function defaultOnError(err: unknown, op: HandlerName): void {
  process.emitWarning(`FUSE ${op} handler failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, 'S3zFuseWarning');
}

function resolveOptions(options: MountOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  for (const k of Object.keys(options)) {
    if (!OPTION_KEYS.has(k)) throw new TypeError(`unknown mount option "${k}"`);
  }
  const fsname = options.fsname ?? 's3zmount';
  if (typeof fsname !== 'string' || fsname.length === 0 || fsname.length > 256 || /[\s,\\\0-\x1f\x7f]/.test(fsname)) {
    throw new TypeError('options.fsname must be 1-256 printable characters without spaces, commas or backslashes');
  }
  const subtype = options.subtype ?? 's3zmount';
  if (typeof subtype !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(subtype)) {
    throw new TypeError('options.subtype must be 1-64 characters of [A-Za-z0-9_.-]');
  }
  const maxWrite = checkInt('maxWrite', options.maxWrite, 4096, MIB, MIB);
  if (maxWrite % 4096 !== 0) throw new TypeError('options.maxWrite must be a multiple of 4096');
  const maxBackground = checkInt('maxBackground', options.maxBackground, 1, 65535, 64);
  const writeBuffers = options.writeBuffers ?? 'owned';
  if (writeBuffers !== 'owned' && writeBuffers !== 'borrowed') throw new TypeError('options.writeBuffers must be "owned" or "borrowed"');
  const onError = options.onError ?? defaultOnError;
  if (typeof onError !== 'function') throw new TypeError('options.onError must be a function');
  return {
    readOnly: checkBool('readOnly', options.readOnly),
    allowOther: checkBool('allowOther', options.allowOther),
    defaultPermissions: checkBool('defaultPermissions', options.defaultPermissions),
    allowNonempty: checkBool('allowNonempty', options.allowNonempty),
    fsname,
    subtype,
    maxWrite,
    maxReadahead: checkInt('maxReadahead', options.maxReadahead, 0, 64 * MIB, MIB),
    maxBackground,
    congestionThreshold: checkInt('congestionThreshold', options.congestionThreshold, 1, maxBackground, Math.max(1, Math.floor((maxBackground * 3) / 4))),
    threads: checkInt('threads', options.threads, 1, 256, 16),
    attrTimeout: checkSeconds('attrTimeout', options.attrTimeout, 1),
    entryTimeout: checkSeconds('entryTimeout', options.entryTimeout, 1),
    initTimeoutMs: checkInt('initTimeoutMs', options.initTimeoutMs, 1, 3_600_000, 10_000),
    unmountTimeoutMs: checkInt('unmountTimeoutMs', options.unmountTimeoutMs, 0, 3_600_000, 10_000),
    writeBuffers,
    onError,
  };
}

function checkHandlers(handlers: FuseHandlers): number {
  if (typeof handlers !== 'object' || handlers === null) throw new TypeError('handlers must be an object');
  let mask = 1 << OP.INIT; // INIT always reaches JS: it is how mount() learns the mount is ready
  for (const name of HANDLER_NAMES) {
    const h: unknown = handlers[name];
    if (h === undefined) continue;
    if (typeof h !== 'function') throw new TypeError(`handlers.${name} must be a function`);
    mask |= 1 << HANDLER_OPS[name];
  }
  return mask;
}

// ---------------------------------------------------------------------------
// Helpers

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The errno an error carries (normalised to positive), or undefined. */
export function errnoOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = (err as { errno?: unknown }).errno;
  if (typeof e !== 'number' || !Number.isInteger(e) || e === 0 || Math.abs(e) >= 4096) return undefined;
  return Math.abs(e);
}

function isThenable<T>(v: Awaitable<T>): v is PromiseLike<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function num(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`${name} must be a finite number >= 0`);
  return v;
}

function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((res) => {
    timer = setTimeout(res, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Resolves true if `p` settles within `ms`, false otherwise. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  const d = delay(ms);
  try {
    return await Promise.race([p.then(() => true, () => true), d.promise.then(() => false)]);
  } finally {
    d.cancel();
  }
}

const isRoot = (): boolean => process.getuid?.() === 0;

interface MountInfo {
  dev: string; // "major:minor"
  mountpoint: string;
  fstype: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The current mount table of this process's namespace. */
export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      dev: f[2] ?? '',
      mountpoint: unescapeMount(f[4] ?? ''),
      fstype: f[sep + 1] ?? '',
      source: unescapeMount(f[sep + 2] ?? ''),
    });
  }
  return out;
}

function mountError(dir: string, errno: number, why: string, cause?: unknown): S3zError {
  return new S3zError('EMOUNT', `cannot mount on ${dir}: ${why}`, cause === undefined ? { errno } : { errno, cause });
}

/**
 * Why a mount on `dir` would fail (missing, busy or non-empty mount point, no
 * /dev/fuse, no permission), as an EMOUNT S3zError; resolves to the resolved mount point. mount()
 * runs it before any native call; callers may run it earlier to fail before other work.
 */
export async function checkMountpoint(dir: string, opts: Pick<MountOptions, 'allowOther' | 'allowNonempty'> = {}): Promise<string> {
  // Resolve the parent only: touching the directory itself could block on a hung mount.
  const abs = resolve(dir);
  let target: string;
  try {
    target = abs === '/' ? '/' : join(await realpath(dirname(abs)), basename(abs));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw mountError(dir, E.ENOENT, 'the mount point does not exist', err);
    if (code === 'EACCES') throw mountError(dir, E.EACCES, 'no permission to reach the mount point', err);
    throw mountError(dir, E.EIO, messageOf(err), err);
  }
  const busy = (await readMountInfo()).filter((m) => m.mountpoint === target);
  const last = busy[busy.length - 1];
  if (last !== undefined) {
    throw mountError(dir, E.EBUSY, `it is already a mount point (${last.fstype} from ${last.source}); unmount it first` +
      (last.fstype.startsWith('fuse') ? ` (fusermount3 -u ${target})` : ''));
  }
  try {
    const st = await stat(target);
    if (!st.isDirectory()) throw mountError(dir, E.ENOTDIR, 'the mount point is not a directory');
  } catch (err) {
    if (err instanceof S3zError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw mountError(dir, E.ENOENT, 'the mount point does not exist', err);
    if (code === 'EACCES') throw mountError(dir, E.EACCES, 'no permission to access the mount point', err);
    if (code === 'ENOTCONN') {
      throw mountError(dir, E.EBUSY, `a dead FUSE mount is there; clear it with "fusermount3 -u ${target}"`, err);
    }
    throw mountError(dir, E.EIO, messageOf(err), err);
  }
  if (opts.allowNonempty !== true) {
    const entries = await readdir(target).catch(() => [] as string[]);
    if (entries.length > 0) {
      const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ` and ${entries.length - 3} more` : '');
      throw mountError(dir, E.ENOTEMPTY, `the directory is not empty (it holds ${shown}) and the mount would hide that; pass --allow-nonempty to mount over it`);
    }
  }
  try {
    await access('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw mountError(dir, E.ENODEV, '/dev/fuse does not exist: FUSE is not available here (load the fuse kernel module; in a container, pass --device /dev/fuse)', err);
    }
    throw mountError(dir, E.EACCES, 'no permission to open /dev/fuse (run as root or add the user to the group owning /dev/fuse)', err);
  }
  if (!isRoot()) {
    try {
      await access(target, fsConstants.W_OK);
    } catch (err) {
      throw mountError(dir, E.EACCES, 'no permission: an unprivileged user can only mount on a directory it may write', err);
    }
    if (!(await findFusermount())) throw mountError(dir, E.EACCES, 'no permission: not root and fusermount3 is not installed (apt-get install fuse3)');
    if (opts.allowOther) {
      const conf = await readFile('/etc/fuse.conf', 'utf8').catch(() => '');
      if (!/^\s*user_allow_other\b/m.test(conf)) {
        throw mountError(dir, E.EACCES, 'no permission for allowOther: /etc/fuse.conf lacks user_allow_other');
      }
    }
  }
  return target;
}

async function findFusermount(): Promise<boolean> {
  for (const d of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    if (!d) continue;
    try {
      await access(join(d, 'fusermount3'), fsConstants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Lazily detach a mount (the kernel ends the connection when the last user lets go). */
async function detach(target: string): Promise<void> {
  if (isRoot()) {
    loadNative().umount(target, loadNative().constants.MNT_DETACH);
    return;
  }
  await new Promise<void>((res, rej) => {
    execFile('fusermount3', ['-u', '-z', target], (err, _out, stderr) => {
      if (err) rej(Object.assign(new Error(`fusermount3 -u -z ${target}: ${stderr.trim() || err.message}`), { code: 'EINVAL' }));
      else res();
    });
  });
}

function detachSync(target: string): void {
  try {
    if (isRoot()) loadNative().umount(target, loadNative().constants.MNT_DETACH);
    else spawnSync('fusermount3', ['-u', '-z', target], { stdio: 'ignore' });
  } catch {
    // best effort at exit
  }
}

// One 'exit' listener for all live sessions.
const liveSessions = new Set<FuseSession>();
let exitHookInstalled = false;
function exitHook(): void {
  for (const s of liveSessions) s[kExit]();
}
const kExit = Symbol('exit');
const kStart = Symbol('start');
const kSetDev = Symbol('setDev');
const kDispatch = Symbol('dispatch');

// ---------------------------------------------------------------------------
// Session

interface Pending {
  op: HandlerName;
}

/** A mounted filesystem. Obtain one from mount(). */
export class FuseSession {
  /** Absolute path of the mount point. */
  readonly mountpoint: string;
  /** Resolves once the session has ended (after unmount(), or an unmount from outside). Never rejects. */
  readonly closed: Promise<void>;

  #native: Native;
  #handle: NativeSession | undefined;
  #handlers: FuseHandlers;
  #opts: ResolvedOptions;
  #state: SessionState = 'mounting';
  #pending = new Map<number, Pending>();
  #drainWaiters: Array<() => void> = [];
  #resolveClosed!: () => void;
  #ready: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  #conn: ConnInfo | undefined;
  #dev: string | undefined;
  #unmounting: Promise<void> | undefined;
  #attrVec = new Float64Array(ATTR_LEN);
  #uid = process.getuid?.() ?? 0;
  #gid = process.getgid?.() ?? 0;
  #mountTimeMs = Date.now();

  /** @internal use mount() */
  constructor(native: Native, mountpoint: string, handlers: FuseHandlers, opts: ResolvedOptions) {
    this.#native = native;
    this.mountpoint = mountpoint;
    this.#handlers = handlers;
    this.#opts = opts;
    this.closed = new Promise<void>((res) => {
      this.#resolveClosed = res;
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** Requests handed to handlers and not answered yet. */
  get inflight(): number {
    return this.#pending.size;
  }

  /** The connection as negotiated with the kernel (undefined before INIT). */
  get conn(): ConnInfo | undefined {
    return this.#conn;
  }

  /**
   * Waits (bounded) for in-flight requests, answers any left with EIO, detaches
   * the mount and resolves once the session has ended. Idempotent.
   */
  unmount(options: UnmountOptions = {}): Promise<void> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const timeoutMs = options.timeoutMs ?? this.#opts.unmountTimeoutMs;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new TypeError('options.timeoutMs must be a number >= 0');
    }
    if (this.#state === 'closed') return Promise.resolve();
    this.#unmounting ??= this.#unmount(timeoutMs);
    return this.#unmounting;
  }

  async #unmount(timeoutMs: number): Promise<void> {
    this.#state = 'unmounting';
    if (this.#pending.size > 0) {
      const drained = new Promise<void>((res) => this.#drainWaiters.push(res));
      if (!(await within(drained, timeoutMs))) this.#giveUp();
    }
    if (this.state === 'closed') return;
    try {
      await detach(this.mountpoint);
    } catch (err) {
      // EINVAL: not mounted any more (unmounted from outside); the loop is ending on its own.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new S3zError('EMOUNT', `cannot unmount ${this.mountpoint}: ${messageOf(err)}`, { cause: err });
      }
    }
    if (await within(this.closed, timeoutMs)) return;
    // Something still holds the detached mount (an open file, a cwd): end the connection.
    this.#giveUp();
    await this.#abortConnection();
    if (await within(this.closed, Math.max(timeoutMs, 1000))) return;
    throw new S3zError('EMOUNT', `${this.mountpoint}: the FUSE session did not end after the mount was detached and the connection aborted`);
  }

  /**
   * Stops waiting for handlers: what is pending is answered EIO, and from now on
   * requests are answered EIO without reaching JS (nothing can then wait on the JS
   * thread, see the header).
   */
  #giveUp(): void {
    if (this.#handle !== undefined && this.state !== 'closed') this.#native.refuse(this.#handle, E.EIO);
    this.#abandon(E.EIO);
  }

  /** Writes to fusectl's abort file of this connection (mounting fusectl if needed and allowed). */
  async #abortConnection(): Promise<void> {
    if (this.#dev === undefined) return;
    const [maj, min] = this.#dev.split(':').map(Number);
    if (maj === undefined || min === undefined || Number.isNaN(maj) || Number.isNaN(min)) return;
    const dir = '/sys/fs/fuse/connections';
    const file = join(dir, String(maj * 2 ** 20 + min), 'abort');
    try {
      const entries = await readdir(dir).catch(() => [] as string[]);
      // Not spawned (a child closing this mount's files at exec would wait on us).
      if (entries.length === 0 && isRoot()) this.#native.mountFs('fusectl', dir, 'fusectl');
      await writeFile(file, '1');
    } catch (err) {
      this.#opts.onError(new S3zError('EMOUNT', `could not abort the FUSE connection through ${file}: ${messageOf(err)}`, { cause: err }), 'init');
    }
  }

  /** Answers every pending request with `errno`; their handlers' later results are dropped. */
  #abandon(errno: number): void {
    const ids = [...this.#pending.keys()];
    this.#pending.clear();
    for (const id of ids) this.#native.replyErr(id, errno);
    this.#drained();
  }

  #drained(): void {
    if (this.#pending.size !== 0 || this.#drainWaiters.length === 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  /** @internal called once the native session is up. */
  [kStart](handle: NativeSession): Promise<void> {
    this.#handle = handle;
    liveSessions.add(this);
    if (!exitHookInstalled) {
      process.on('exit', exitHook);
      exitHookInstalled = true;
    }
    const ready = new Promise<void>((res, rej) => {
      this.#ready = { resolve: res, reject: rej };
    });
    return ready;
  }

  /** @internal */
  [kExit](): void {
    if (this.#state === 'closed' || this.#handle === undefined) return;
    this.#native.markExiting(this.#handle);
    detachSync(this.mountpoint);
  }

  /** @internal */
  [kSetDev](dev: string | undefined): void {
    this.#dev = dev;
  }

  /** @internal Called by the native side for every request, on the JS thread. Never throws. */
  readonly [kDispatch]: Dispatch = (op, id, a, b, c, d, e) => {
    try {
      this.#dispatch(op, id, a, b, c, d, e);
    } catch (err) {
      // A bug here must not leave the kernel waiting (replyErr refuses an id already answered).
      if (id !== 0) {
        this.#pending.delete(id);
        this.#native.replyErr(id, E.EIO);
        this.#drained();
      }
      this.#report(err, 'init');
    }
  };

  #dispatch(op: number, id: number, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): void {
    const h = this.#handlers;
    switch (op) {
      case OP.READ:
        this.#pending.set(id, { op: 'read' });
        return this.#settle(id, 'read', () => h.read!(a as number, b as number, c as number, d as number), this.#okRead);
      case OP.WRITE:
        this.#pending.set(id, { op: 'write' });
        return this.#settle(id, 'write', () => h.write!(a as number, b as number, c as number, d as Buffer, e as number), this.#okWrite);
      case OP.LOOKUP:
        this.#pending.set(id, { op: 'lookup' });
        return this.#settle(id, 'lookup', () => h.lookup!(a as number, b as string), this.#okEntry);
      case OP.GETATTR:
        this.#pending.set(id, { op: 'getattr' });
        return this.#settle(id, 'getattr', () => h.getattr!(a as number, b as number | undefined), (rid, v) => this.#okAttr(rid, v, a as number));
      case OP.SETATTR:
        this.#pending.set(id, { op: 'setattr' });
        return this.#settle(id, 'setattr', () => h.setattr!(a as number, setattrChanges(c as number, d as Float64Array), b as number | undefined),
          (rid, v) => this.#okAttr(rid, v, a as number));
      case OP.OPEN:
        this.#pending.set(id, { op: 'open' });
        return this.#settle(id, 'open', () => h.open!(a as number, b as number), (rid, v) => this.#okOpen(rid, v, a as number, b as number));
      case OP.OPENDIR:
        this.#pending.set(id, { op: 'opendir' });
        return this.#settle(id, 'opendir', () => h.opendir!(a as number, b as number), (rid, v) => this.#okOpendir(rid, v, a as number));
      case OP.FLUSH:
        this.#pending.set(id, { op: 'flush' });
        return this.#settle(id, 'flush', () => h.flush!(a as number, b as number), this.#okVoid);
      case OP.FSYNC:
        this.#pending.set(id, { op: 'fsync' });
        return this.#settle(id, 'fsync', () => h.fsync!(a as number, b as number, c as boolean), this.#okVoid);
      case OP.FALLOCATE:
        this.#pending.set(id, { op: 'fallocate' });
        return this.#settle(id, 'fallocate', () => h.fallocate!(a as number, b as number, c as number, d as number, e as number), this.#okVoid);
      case OP.RELEASE:
        this.#pending.set(id, { op: 'release' });
        return this.#settle(id, 'release', () => h.release!(a as number, b as number, c as number), this.#okVoid);
      case OP.RELEASEDIR:
        this.#pending.set(id, { op: 'releasedir' });
        return this.#settle(id, 'releasedir', () => h.releasedir!(a as number, b as number), this.#okVoid);
      case OP.READDIR:
        this.#pending.set(id, { op: 'readdir' });
        return this.#settle(id, 'readdir', () => h.readdir!(a as number, b as number, c as number, d as number), (rid, v) => this.#okDir(rid, v, c as number));
      case OP.STATFS:
        this.#pending.set(id, { op: 'statfs' });
        return this.#settle(id, 'statfs', () => h.statfs!(a as number), this.#okStatfs);
      case OP.FORGET:
        try {
          h.forget?.(a as number, b as number);
        } catch (err) {
          this.#report(err, 'forget');
        }
        return;
      case OP.INIT:
        return this.#init(a as Float64Array);
      case OP.ENDED:
        return this.#ended();
      default:
        throw new Error(`unknown FUSE op ${op}`);
    }
  }

  /** Runs a handler and sends its reply (or its errno) when it settles. */
  #settle<T>(id: number, op: HandlerName, call: () => Awaitable<T>, ok: (id: number, v: T) => void): void {
    let v: Awaitable<T>;
    try {
      v = call();
    } catch (err) {
      this.#fail(id, op, err);
      return;
    }
    if (isThenable(v)) {
      v.then((r) => this.#ok(id, op, r, ok), (err: unknown) => this.#fail(id, op, err));
    } else {
      this.#ok(id, op, v, ok);
    }
  }

  #ok<T>(id: number, op: HandlerName, v: T, ok: (id: number, v: T) => void): void {
    if (!this.#pending.delete(id)) return; // abandoned: already answered
    try {
      ok(id, v);
    } catch (err) {
      // A result of the wrong shape: a bug in the handler.
      this.#report(err, op);
      this.#native.replyErr(id, E.EIO);
    }
    this.#drained();
  }

  #fail(id: number, op: HandlerName, err: unknown): void {
    if (!this.#pending.delete(id)) return;
    let errno = errnoOf(err);
    if (errno === undefined) {
      this.#report(err, op);
      errno = E.EIO;
    }
    this.#native.replyErr(id, errno);
    this.#drained();
  }

  #report(err: unknown, op: HandlerName): void {
    try {
      this.#opts.onError(err, op);
    } catch {
      // the reporter must not break dispatch
    }
  }

  readonly #okRead = (id: number, v: Uint8Array): void => {
    if (!(v instanceof Uint8Array)) throw new TypeError('the read handler must return a Uint8Array');
    this.#native.replyBuf(id, v);
  };

  readonly #okWrite = (id: number, v: number): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new TypeError('the write handler must return the number of bytes written');
    this.#native.replyWrite(id, v);
  };

  readonly #okVoid = (id: number): void => {
    this.#native.replyErr(id, 0);
  };

  readonly #okEntry = (id: number, v: Entry): void => {
    if (typeof v !== 'object' || v === null) throw new TypeError('the lookup handler must return an Entry');
    const ino = num('Entry.ino', v.ino, -1);
    if (!Number.isInteger(ino) || ino < 1) throw new TypeError('Entry.ino must be an integer >= 1');
    this.#fillAttr(v.attr, ino);
    this.#native.replyEntry(id, this.#attrVec, num('Entry.generation', v.generation, 0),
      num('Entry.attrTimeout', v.attrTimeout, this.#opts.attrTimeout), num('Entry.entryTimeout', v.entryTimeout, this.#opts.entryTimeout));
  };

  #okAttr(id: number, v: Stat, ino: number): void {
    this.#fillAttr(v, ino);
    this.#native.replyAttr(id, this.#attrVec, this.#opts.attrTimeout);
  }

  #okOpen(id: number, v: OpenResult | void, ino: number, flags: number): void {
    let fh = 0;
    let bits = 0;
    if (v !== undefined) {
      if (typeof v !== 'object' || v === null) throw new TypeError('the open handler must return an OpenResult or nothing');
      fh = fhOf(v.fh);
      if (v.directIo === true) bits |= OPEN_DIRECT_IO;
      if (v.keepCache === true) bits |= OPEN_KEEP_CACHE;
      if (v.nonSeekable === true) bits |= OPEN_NONSEEKABLE;
    }
    if (this.#native.replyOpen(id, fh, bits) === 0 && this.#handlers.release !== undefined) {
      // The opener was interrupted: the kernel will not release this handle, so do it here.
      Promise.resolve()
        .then(() => this.#handlers.release!(ino, fh, flags))
        .catch((err: unknown) => this.#report(err, 'release'));
    }
  }

  #okOpendir(id: number, v: OpendirResult | void, ino: number): void {
    let fh = 0;
    let bits = 0;
    if (v !== undefined) {
      if (typeof v !== 'object' || v === null) throw new TypeError('the opendir handler must return an OpendirResult or nothing');
      fh = fhOf(v.fh);
      if (v.cacheReaddir === true) bits |= OPEN_CACHE_READDIR;
    }
    if (this.#native.replyOpen(id, fh, bits) === 0 && this.#handlers.releasedir !== undefined) {
      Promise.resolve()
        .then(() => this.#handlers.releasedir!(ino, fh))
        .catch((err: unknown) => this.#report(err, 'releasedir'));
    }
  }

  #okDir(id: number, v: readonly DirEntry[], offset: number): void {
    if (!Array.isArray(v)) throw new TypeError('the readdir handler must return an array of DirEntry');
    const names: string[] = new Array<string>(v.length);
    const vec = new Float64Array(v.length * 3);
    for (let i = 0; i < v.length; i++) {
      const ent = v[i] as DirEntry;
      if (typeof ent !== 'object' || ent === null) throw new TypeError('DirEntry must be an object');
      if (typeof ent.name !== 'string' || ent.name.length === 0 || ent.name.includes('/') || ent.name.includes('\0') || Buffer.byteLength(ent.name) > 255) {
        throw new TypeError(`bad DirEntry name ${JSON.stringify(ent.name)}`);
      }
      names[i] = ent.name;
      vec[i * 3] = num('DirEntry.ino', ent.ino, 0);
      vec[i * 3 + 1] = num('DirEntry.mode', ent.mode, 0) & S_IFMT;
      vec[i * 3 + 2] = num('DirEntry.offset', ent.offset, offset + i + 1);
    }
    this.#native.replyDir(id, names, vec);
  }

  readonly #okStatfs = (id: number, v: Statfs): void => {
    if (typeof v !== 'object' || v === null) throw new TypeError('the statfs handler must return a Statfs');
    const vec = new Float64Array(STATFS_LEN);
    const bsize = num('Statfs.bsize', v.bsize, 4096);
    vec[0] = bsize;
    vec[1] = num('Statfs.frsize', v.frsize, bsize);
    vec[2] = num('Statfs.blocks', v.blocks, 0);
    vec[3] = num('Statfs.bfree', v.bfree, 0);
    vec[4] = num('Statfs.bavail', v.bavail, vec[3]);
    vec[5] = num('Statfs.files', v.files, 0);
    vec[6] = num('Statfs.ffree', v.ffree, 0);
    vec[7] = num('Statfs.favail', v.favail, vec[6]);
    vec[8] = num('Statfs.fsid', v.fsid, 0);
    vec[9] = num('Statfs.namemax', v.namemax, 255);
    this.#native.replyStatfs(id, vec);
  };

  /** Fills the shared attribute vector (layout A_* in the C file). */
  #fillAttr(st: Stat, ino: number): void {
    if (typeof st !== 'object' || st === null) throw new TypeError('attributes must be a Stat object');
    const v = this.#attrVec;
    const mode = num('Stat.mode', st.mode, -1);
    if (mode < 0) throw new TypeError('Stat.mode is required');
    const size = num('Stat.size', st.size, 0);
    v[0] = ino;
    v[1] = mode;
    v[2] = num('Stat.nlink', st.nlink, (mode & S_IFMT) === S_IFDIR ? 2 : 1);
    v[3] = num('Stat.uid', st.uid, this.#uid);
    v[4] = num('Stat.gid', st.gid, this.#gid);
    v[5] = num('Stat.rdev', st.rdev, 0);
    v[6] = size;
    v[7] = num('Stat.blocks', st.blocks, Math.ceil(size / 512));
    v[8] = num('Stat.blksize', st.blksize, 4096);
    v[9] = num('Stat.atimeMs', st.atimeMs, this.#mountTimeMs);
    v[10] = num('Stat.mtimeMs', st.mtimeMs, this.#mountTimeMs);
    v[11] = num('Stat.ctimeMs', st.ctimeMs, this.#mountTimeMs);
  }

  #init(vec: Float64Array): void {
    const conn: ConnInfo = {
      protoMajor: vec[0] ?? 0,
      protoMinor: vec[1] ?? 0,
      capable: vec[2] ?? 0,
      want: vec[3] ?? 0,
      maxWrite: vec[4] ?? 0,
      maxRead: vec[5] ?? 0,
      maxReadahead: vec[6] ?? 0,
      maxBackground: vec[7] ?? 0,
      congestionThreshold: vec[8] ?? 0,
      timeGran: vec[9] ?? 0,
    };
    this.#conn = conn;
    const ready = this.#ready;
    const initHandler = this.#handlers.init;
    let p: Promise<void>;
    try {
      p = Promise.resolve(initHandler === undefined ? undefined : initHandler.call(this.#handlers, conn));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        if (this.#state === 'mounting') this.#state = 'mounted';
        ready?.resolve();
      },
      (err: unknown) => ready?.reject(err),
    );
  }

  #ended(): void {
    // The loop has returned: nothing more will arrive. Answer what is left
    // (the native side only frees those requests now) and free the session.
    this.#abandon(E.ENOTCONN);
    if (this.#handle !== undefined) {
      try {
        this.#native.destroy(this.#handle);
      } catch (err) {
        this.#report(err, 'init');
      }
    }
    const wasMounting = this.#state === 'mounting';
    this.#state = 'closed';
    liveSessions.delete(this);
    if (wasMounting) this.#ready?.reject(new S3zError('EMOUNT', `the FUSE session on ${this.mountpoint} ended before the kernel's INIT`));
    this.#resolveClosed();
  }
}

function fhOf(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new TypeError('fh must be a safe integer >= 0');
  return v;
}

function setattrChanges(toSet: number, v: Float64Array): SetattrChanges {
  const c: SetattrChanges = {};
  if (toSet & SET_MODE) c.mode = v[0] ?? 0;
  if (toSet & SET_UID) c.uid = v[1] ?? 0;
  if (toSet & SET_GID) c.gid = v[2] ?? 0;
  if (toSet & SET_SIZE) c.size = v[3] ?? 0;
  if (toSet & SET_ATIME_NOW) c.atimeMs = 'now';
  else if (toSet & SET_ATIME) c.atimeMs = v[4] ?? 0;
  if (toSet & SET_MTIME_NOW) c.mtimeMs = 'now';
  else if (toSet & SET_MTIME) c.mtimeMs = v[5] ?? 0;
  if (toSet & SET_CTIME) c.ctimeMs = v[6] ?? 0;
  return c;
}

// ---------------------------------------------------------------------------
// Entry points

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
      borrowWrites: opts.writeBuffers === 'borrowed' ? 1 : 0,
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

export interface SignalOptions {
  /** Default ['SIGINT', 'SIGTERM']. */
  signals?: NodeJS.Signals[];
  /** Passed to unmount(). */
  timeoutMs?: number;
  /** Called when a signal arrives, before unmounting. */
  onSignal?: (signal: NodeJS.Signals) => void;
  /** Called if the unmount fails. Default: process.emitWarning. */
  onError?: (err: unknown) => void;
  /**
   * After the unmount, remove the listeners and raise the signal again so the
   * process ends as it would have (only if no other listener is left). Default true.
   */
  reraise?: boolean;
}

/**
 * Opt-in: on SIGINT/SIGTERM, unmount `session` cleanly. A second signal while
 * unmounting detaches the mount at once and re-raises.
 * Returns a function that removes the listeners. Also removed once the session closes.
 */
export function unmountOnSignals(session: FuseSession, options: SignalOptions = {}): () => void {
  if (!(session instanceof FuseSession)) throw new TypeError('session must be a FuseSession');
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  if (!Array.isArray(signals) || signals.some((s) => typeof s !== 'string')) throw new TypeError('options.signals must be an array of signal names');
  const reraise = options.reraise ?? true;
  const onError = options.onError ?? ((err: unknown) => process.emitWarning(`unmount on signal failed: ${messageOf(err)}`, 'S3zFuseWarning'));
  let handling = false;
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    for (const s of signals) process.removeListener(s, listener);
  };
  const raise = (signal: NodeJS.Signals): void => {
    dispose();
    if (reraise && process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  function listener(signal: NodeJS.Signals): void {
    if (handling) {
      // Death by signal runs no 'exit' listener: detach now, then let the signal end the process.
      session[kExit]();
      raise(signal);
      return;
    }
    handling = true;
    try {
      options.onSignal?.(signal);
    } catch (err) {
      onError(err);
    }
    const unmountOpts: UnmountOptions = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    session.unmount(unmountOpts).catch(onError).finally(() => raise(signal));
  }
  for (const s of signals) process.on(s, listener);
  void session.closed.then(() => {
    if (!handling) dispose();
  });
  return dispose;
}
