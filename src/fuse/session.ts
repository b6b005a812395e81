// A mounted FUSE session: dispatches the addon's requests to the handlers and answers
// each exactly once, with their result (encoded by replies.ts) or an errno
// (native/s3zfuse.c is mechanism; the policy is here and in the other files of
// src/fuse/, re-exported by binding.ts).
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
import { readdir, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { S3zError } from '../errors.js';
import { setattrChanges } from './encode.js';
import { detach, detachSync, isRoot } from './mountpoint.js';
import { OP, type Dispatch, type Native, type NativeSession } from './native.js';
import type { ResolvedOptions } from './options.js';
import type { Awaitable, ConnInfo, FuseHandlers, HandlerName, SessionState, UnmountOptions } from './types.js';
import { errnoOf, isThenable, messageOf, within } from './util.js';
import { DirectReadTable, type DirectCounts, type DirectLayout } from './direct-reads.js';
import { Replies } from './replies.js';

const E = osConstants.errno;

// One 'exit' listener for all live sessions.
const liveSessions = new Set<FuseSession>();
let exitHookInstalled = false;
function exitHook(): void {
  for (const s of liveSessions) s[kExit]();
}
// Internal hooks of a session, for mount() and unmountOnSignals() only.
export const kExit = Symbol('exit');
export const kStart = Symbol('start');
export const kSetDev = Symbol('setDev');
export const kDispatch = Symbol('dispatch');

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
  #replies: Replies;
  #direct: DirectReadTable | undefined;

  /** @internal use mount() */
  constructor(native: Native, mountpoint: string, handlers: FuseHandlers, opts: ResolvedOptions) {
    this.#native = native;
    this.mountpoint = mountpoint;
    this.#handlers = handlers;
    this.#opts = opts;
    this.#replies = new Replies(native, handlers, opts, (err, op) => this.#report(err, op));
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

  /**
   * FileSlice replies so far: sent on the JS thread (every byte was in the page cache)
   * and sent from libuv's pool (some were not, or the file cannot say without waiting);
   * and replies sent from LentBytes.
   */
  get sliceReplies(): { sentHere: number; pooled: number; lent: number } {
    return this.#replies.sliceReplies;
  }

  /**
   * Turns on direct reads for `layout` (once per session): reads within one granted block
   * are answered by libfuse's threads from the block's file, never reaching the read
   * handler. The caller grants and revokes blocks on the returned table.
   */
  directReads(layout: DirectLayout): DirectReadTable {
    if (this.#handle === undefined || this.#direct !== undefined) throw new Error('directReads(): only once, on a mounted session');
    this.#direct = new DirectReadTable(this.#native, this.#handle, layout);
    return this.#direct;
  }

  /** Reads answered directly so far (null without direct reads). */
  get directCounts(): DirectCounts | null {
    return this.#direct?.counts ?? null;
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
        return this.#settle(id, 'read', () => h.read!(a as number, b as number, c as number, d as number), (rid, v) => this.#replies.read(rid, v, d as number));
      case OP.WRITE:
        this.#pending.set(id, { op: 'write' });
        return this.#settle(id, 'write', () => h.write!(a as number, b as number, c as number, d as Buffer, e as number), this.#replies.write);
      case OP.LOOKUP:
        this.#pending.set(id, { op: 'lookup' });
        return this.#settle(id, 'lookup', () => h.lookup!(a as number, b as string), this.#replies.entry);
      case OP.GETATTR:
        this.#pending.set(id, { op: 'getattr' });
        return this.#settle(id, 'getattr', () => h.getattr!(a as number, b as number | undefined), (rid, v) => this.#replies.attr(rid, v, a as number));
      case OP.SETATTR:
        this.#pending.set(id, { op: 'setattr' });
        return this.#settle(id, 'setattr', () => h.setattr!(a as number, setattrChanges(c as number, d as Float64Array), b as number | undefined),
          (rid, v) => this.#replies.attr(rid, v, a as number));
      case OP.OPEN:
        this.#pending.set(id, { op: 'open' });
        return this.#settle(id, 'open', () => h.open!(a as number, b as number), (rid, v) => this.#replies.open(rid, v, a as number, b as number));
      case OP.OPENDIR:
        this.#pending.set(id, { op: 'opendir' });
        return this.#settle(id, 'opendir', () => h.opendir!(a as number, b as number), (rid, v) => this.#replies.opendir(rid, v, a as number));
      case OP.FLUSH:
        this.#pending.set(id, { op: 'flush' });
        return this.#settle(id, 'flush', () => h.flush!(a as number, b as number), this.#replies.ok);
      case OP.FSYNC:
        this.#pending.set(id, { op: 'fsync' });
        return this.#settle(id, 'fsync', () => h.fsync!(a as number, b as number, c as boolean), this.#replies.ok);
      case OP.FALLOCATE:
        this.#pending.set(id, { op: 'fallocate' });
        return this.#settle(id, 'fallocate', () => h.fallocate!(a as number, b as number, c as number, d as number, e as number), this.#replies.ok);
      case OP.RELEASE:
        this.#pending.set(id, { op: 'release' });
        return this.#settle(id, 'release', () => h.release!(a as number, b as number, c as number), this.#replies.ok);
      case OP.RELEASEDIR:
        this.#pending.set(id, { op: 'releasedir' });
        return this.#settle(id, 'releasedir', () => h.releasedir!(a as number, b as number), this.#replies.ok);
      case OP.READDIR:
        this.#pending.set(id, { op: 'readdir' });
        return this.#settle(id, 'readdir', () => h.readdir!(a as number, b as number, c as number, d as number), (rid, v) => this.#replies.dir(rid, v, c as number));
      case OP.STATFS:
        this.#pending.set(id, { op: 'statfs' });
        return this.#settle(id, 'statfs', () => h.statfs!(a as number), this.#replies.statfs);
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
    if (!this.#pending.delete(id)) {
      // Abandoned: already answered. A file slice is still let go of.
      if (op === 'read') this.#replies.releaseSlice(v);
      return;
    }
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
    // (the native side only frees those requests now) and free the session,
    // once the slice replies still on the pool are out (they hold its requests).
    this.#abandon(E.ENOTCONN);
    this.#replies.afterSlices(() => this.#close());
  }

  #close(): void {
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
