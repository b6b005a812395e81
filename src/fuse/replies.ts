// A session's replies: a handler's result checked for shape and encoded into the
// addon's reply call for its op. A result of the wrong shape throws a TypeError (the
// session answers EIO and reports it: a bug in the handler).
// States of a read's FileSlice reply: sent here on the JS thread (every byte was in
// the page cache), or queued on libuv's pool until it is out; the slice is released
// once, whichever way its reply went, and the session is freed only after the last
// queued one (afterSlices()). LentBytes are sent here and released at once after.
// Invariants: the attribute vector is shared by every reply and filled just before
// the call that reads it (the addon copies it); an open or opendir the kernel no longer
// waits for (the opener was interrupted) is released here, as the kernel never will.
import { S3zError } from '../errors.js';
import { checkLent, checkSlice, dirVec, fhOf, fillAttr, isLent, statfsVec, type AttrDefaults } from './encode.js';
import { ATTR_LEN, FD_QUEUED, FD_SENT, OPEN_CACHE_READDIR, OPEN_DIRECT_IO, OPEN_KEEP_CACHE, OPEN_NONSEEKABLE, type Native } from './native.js';
import type { ResolvedOptions } from './options.js';
import type { DirEntry, Entry, FileSlice, FuseHandlers, HandlerName, LentBytes, OpendirResult, OpenResult, Stat, Statfs } from './types.js';
import { num } from './util.js';

export class Replies {
  #native: Native;
  #handlers: FuseHandlers;
  #opts: ResolvedOptions;
  #report: (err: unknown, op: HandlerName) => void;
  #attrVec = new Float64Array(ATTR_LEN);
  #attrDefaults: AttrDefaults = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, timeMs: Date.now() };
  /** Slice replies queued on libuv's pool and not out yet (replyFd). */
  #fdReplies = 0;
  #sliceReplies = { sentHere: 0, pooled: 0, lent: 0 };
  #fdDrained: (() => void) | undefined;

  constructor(native: Native, handlers: FuseHandlers, opts: ResolvedOptions, report: (err: unknown, op: HandlerName) => void) {
    this.#native = native;
    this.#handlers = handlers;
    this.#opts = opts;
    this.#report = report;
  }

  /** FileSlice replies so far, by where they were sent from, and LentBytes replies. */
  get sliceReplies(): { sentHere: number; pooled: number; lent: number } {
    return { ...this.#sliceReplies };
  }

  /** Calls `fn` once no slice reply is left on the pool (at once if none is). */
  afterSlices(fn: () => void): void {
    if (this.#fdReplies === 0) {
      this.#fdDrained = undefined;
      fn();
      return;
    }
    this.#fdDrained = () => {
      this.#fdDrained = undefined;
      fn();
    };
  }

  read(id: number, v: Uint8Array | FileSlice | LentBytes, size: number): void {
    if (v instanceof Uint8Array) {
      this.#native.replyBuf(id, v);
      return;
    }
    if (typeof v === 'object' && v !== null && isLent(v)) {
      try {
        checkLent(v, size);
        // The addon's writev to /dev/fuse is done when this returns: the bytes go back.
        this.#native.replyBuf(id, v.bytes);
        this.#sliceReplies.lent++;
      } finally {
        this.releaseSlice(v);
      }
      return;
    }
    let queued = false;
    try {
      checkSlice(v, size);
      // Answered for JS at once; a slice the pool sends is held until it is out.
      const how = this.#native.replyFd(id, v.fd, v.position, v.length, (errno) => {
        if (errno !== 0) this.#sliceFailed(v, errno);
        this.releaseSlice(v);
        if (--this.#fdReplies === 0) this.#fdDrained?.();
      });
      queued = how === FD_QUEUED;
      if (queued) {
        this.#fdReplies++;
        this.#sliceReplies.pooled++;
      } else if (how === FD_SENT) this.#sliceReplies.sentHere++;
    } finally {
      if (!queued) this.releaseSlice(v);
    }
  }

  /** Lets go of a read handler's FileSlice or LentBytes (once: every path of a read ends here once). */
  releaseSlice(v: unknown): void {
    if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return;
    const release = (v as Partial<FileSlice>).release;
    if (typeof release !== 'function') return;
    try {
      release.call(v);
    } catch (err) {
      this.#report(err, 'read');
    }
  }

  /** The kernel got `errno` for a slice reply (the file could not supply the bytes), not a short read. */
  #sliceFailed(v: FileSlice, errno: number): void {
    this.#report(new S3zError('EDEVICE', `a read reply from fd ${v.fd} (${v.length} bytes at ${v.position}) failed: errno ${errno}`, { errno }), 'read');
  }

  readonly write = (id: number, v: number): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new TypeError('the write handler must return the number of bytes written');
    this.#native.replyWrite(id, v);
  };

  readonly ok = (id: number): void => {
    this.#native.replyErr(id, 0);
  };

  readonly entry = (id: number, v: Entry): void => {
    if (typeof v !== 'object' || v === null) throw new TypeError('the lookup handler must return an Entry');
    const ino = num('Entry.ino', v.ino, -1);
    if (!Number.isInteger(ino) || ino < 1) throw new TypeError('Entry.ino must be an integer >= 1');
    this.#fillAttr(v.attr, ino);
    this.#native.replyEntry(id, this.#attrVec, num('Entry.generation', v.generation, 0),
      num('Entry.attrTimeout', v.attrTimeout, this.#opts.attrTimeout), num('Entry.entryTimeout', v.entryTimeout, this.#opts.entryTimeout));
  };

  attr(id: number, v: Stat, ino: number): void {
    this.#fillAttr(v, ino);
    this.#native.replyAttr(id, this.#attrVec, this.#opts.attrTimeout);
  }

  open(id: number, v: OpenResult | void, ino: number, flags: number): void {
    let fh = 0;
    let bits = 0;
    if (v !== undefined) {
      if (typeof v !== 'object' || v === null) throw new TypeError('the open handler must return an OpenResult or nothing');
      fh = fhOf(v.fh);
      if (v.directIo === true) bits |= OPEN_DIRECT_IO;
      if (v.keepCache === true) bits |= OPEN_KEEP_CACHE;
      if (v.nonSeekable === true) bits |= OPEN_NONSEEKABLE;
    }
    const release = this.#handlers.release;
    if (this.#native.replyOpen(id, fh, bits) === 0 && release !== undefined) this.#orphaned('release', () => release.call(this.#handlers, ino, fh, flags));
  }

  opendir(id: number, v: OpendirResult | void, ino: number): void {
    let fh = 0;
    let bits = 0;
    if (v !== undefined) {
      if (typeof v !== 'object' || v === null) throw new TypeError('the opendir handler must return an OpendirResult or nothing');
      fh = fhOf(v.fh);
      if (v.cacheReaddir === true) bits |= OPEN_CACHE_READDIR;
    }
    const releasedir = this.#handlers.releasedir;
    if (this.#native.replyOpen(id, fh, bits) === 0 && releasedir !== undefined) this.#orphaned('releasedir', () => releasedir.call(this.#handlers, ino, fh));
  }

  /** The opener was interrupted: the kernel will not release this handle, so it is released here. */
  #orphaned(op: 'release' | 'releasedir', release: () => unknown): void {
    Promise.resolve()
      .then(release)
      .catch((err: unknown) => this.#report(err, op));
  }

  dir(id: number, v: readonly DirEntry[], offset: number): void {
    const { names, vec } = dirVec(v, offset);
    this.#native.replyDir(id, names, vec);
  }

  readonly statfs = (id: number, v: Statfs): void => {
    this.#native.replyStatfs(id, statfsVec(v));
  };

  #fillAttr(st: Stat, ino: number): void {
    fillAttr(this.#attrVec, st, ino, this.#attrDefaults);
  }
}
