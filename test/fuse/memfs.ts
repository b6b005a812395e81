// A small in-memory filesystem served through the FUSE binding, for tests:
// a root directory (inode 1) holding one regular file (inode 2).
// It records what reached it (request sizes, fsyncs, fallocates) and can be
// told to fail an op with an error, or to hold reads on a promise.
import { constants } from 'node:os';
import type { DirEntry, Entry, FuseHandlers, HandlerName, OpenResult, SetattrChanges, Stat, Statfs } from '../../dist/fuse/binding.js';
import { FALLOC_FL } from '../../dist/fuse/binding.js';

const E = constants.errno;
const ROOT = 1;
const FILE = 2;

export interface MemFsOptions {
  fileName?: string;
  /** Initial file size (zeros). */
  size?: number;
  /** Open the file with direct_io (bypass the page cache). Default true. */
  directIo?: boolean;
}

export class MemFs {
  readonly fileName: string;
  readonly directIo: boolean;
  #buf: Buffer;
  #size: number;
  #mtimeMs = Date.now();
  readonly writeSizes: number[] = [];
  readonly readSizes: number[] = [];
  readonly fsyncs: Array<{ fh: number; datasync: boolean }> = [];
  readonly flushes: number[] = [];
  readonly fallocates: Array<{ offset: number; length: number; mode: number }> = [];
  readonly opens: number[] = [];
  readonly releases: number[] = [];
  /** Errors to throw, by op (left in place until cleared). */
  readonly failures = new Map<HandlerName, unknown>();
  /** When set, reads wait for it before answering. */
  readGate: Promise<void> | undefined;
  /** Count of reads currently waiting on readGate. */
  readsWaiting = 0;
  /** When set, writes wait for it before applying (the payload is copied first). */
  writeGate: Promise<void> | undefined;
  writesWaiting = 0;
  #nextFh = 1;

  constructor(options: MemFsOptions = {}) {
    this.fileName = options.fileName ?? 'file';
    this.directIo = options.directIo ?? true;
    this.#size = options.size ?? 0;
    this.#buf = Buffer.alloc(Math.max(this.#size, 1 << 20));
  }

  /** The file's current content (a view; copy it to keep it). */
  get content(): Buffer {
    return this.#buf.subarray(0, this.#size);
  }

  get size(): number {
    return this.#size;
  }

  #ensure(end: number): void {
    if (end <= this.#buf.length) return;
    let cap = this.#buf.length;
    while (cap < end) cap *= 2;
    const nb = Buffer.alloc(cap);
    this.#buf.copy(nb, 0, 0, this.#size);
    this.#buf = nb;
  }

  #resize(size: number): void {
    if (size > this.#size) {
      this.#ensure(size);
      this.#buf.fill(0, this.#size, size);
    }
    this.#size = size;
  }

  #check(op: HandlerName): void {
    if (this.failures.has(op)) throw this.failures.get(op);
  }

  #attr(ino: number): Stat {
    if (ino === ROOT) return { mode: 0o040755, size: 0, mtimeMs: this.#mtimeMs };
    if (ino === FILE) return { mode: 0o100644, size: this.#size, mtimeMs: this.#mtimeMs };
    throw Object.assign(new Error('no such inode'), { errno: E.ENOENT });
  }

  /** Handlers for mount(); methods are bound so they can be passed around. */
  get handlers(): FuseHandlers {
    return {
      lookup: (parent: number, name: string): Entry => {
        this.#check('lookup');
        if (parent === ROOT && name === this.fileName) return { ino: FILE, attr: this.#attr(FILE) };
        throw Object.assign(new Error(`no ${name}`), { errno: -E.ENOENT }); // negative, as Node's system errors
      },
      getattr: (ino: number): Stat => {
        this.#check('getattr');
        return this.#attr(ino);
      },
      setattr: (ino: number, changes: SetattrChanges): Stat => {
        this.#check('setattr');
        if (ino === FILE && changes.size !== undefined) this.#resize(changes.size);
        if (changes.mtimeMs !== undefined) this.#mtimeMs = changes.mtimeMs === 'now' ? Date.now() : changes.mtimeMs;
        return this.#attr(ino);
      },
      open: (ino: number): OpenResult => {
        this.#check('open');
        const fh = this.#nextFh++;
        this.opens.push(ino);
        return { fh, directIo: this.directIo };
      },
      read: (ino: number, _fh: number, offset: number, size: number): Uint8Array | Promise<Uint8Array> => {
        this.#check('read');
        this.readSizes.push(size);
        const answer = (): Uint8Array => {
          if (ino !== FILE) throw Object.assign(new Error('not a file'), { errno: E.EISDIR });
          const end = Math.min(this.#size, offset + size);
          return end > offset ? Buffer.from(this.#buf.subarray(offset, end)) : Buffer.alloc(0);
        };
        const gate = this.readGate;
        if (gate === undefined) return answer();
        this.readsWaiting++;
        return gate.then(answer).finally(() => this.readsWaiting--);
      },
      write: (ino: number, _fh: number, offset: number, data: Buffer): number | Promise<number> => {
        this.#check('write');
        this.writeSizes.push(data.length);
        if (ino !== FILE) throw Object.assign(new Error('not a file'), { errno: E.EISDIR });
        const apply = (bytes: Buffer): number => {
          const end = offset + bytes.length;
          if (end > this.#size) this.#resize(end);
          bytes.copy(this.#buf, offset);
          this.#mtimeMs = Date.now();
          return bytes.length;
        };
        const gate = this.writeGate;
        if (gate === undefined) return apply(data);
        const copy = Buffer.from(data); // a borrowed payload is only valid until we settle
        this.writesWaiting++;
        return gate.then(() => apply(copy)).finally(() => this.writesWaiting--);
      },
      flush: (_ino: number, fh: number): void => {
        this.#check('flush');
        this.flushes.push(fh);
      },
      fsync: async (_ino: number, fh: number, datasync: boolean): Promise<void> => {
        this.#check('fsync');
        await new Promise((r) => setImmediate(r));
        this.fsyncs.push({ fh, datasync });
      },
      fallocate: (ino: number, _fh: number, offset: number, length: number, mode: number): void => {
        this.#check('fallocate');
        this.fallocates.push({ offset, length, mode });
        if (ino !== FILE) throw Object.assign(new Error('not a file'), { errno: E.EISDIR });
        const keep = (mode & FALLOC_FL.KEEP_SIZE) !== 0;
        const rest = mode & ~FALLOC_FL.KEEP_SIZE;
        const end = offset + length;
        if (rest === FALLOC_FL.PUNCH_HOLE) {
          if (!keep) throw Object.assign(new Error('punch hole needs keep size'), { errno: E.EOPNOTSUPP });
          this.#buf.fill(0, Math.min(offset, this.#size), Math.min(end, this.#size));
          return;
        }
        if (rest === FALLOC_FL.ZERO_RANGE || rest === 0) {
          if (rest === FALLOC_FL.ZERO_RANGE) this.#buf.fill(0, Math.min(offset, this.#size), Math.min(end, this.#size));
          if (!keep && end > this.#size) this.#resize(end);
          return;
        }
        throw Object.assign(new Error(`mode ${mode}`), { errno: E.EOPNOTSUPP });
      },
      release: (_ino: number, fh: number): void => {
        this.releases.push(fh);
      },
      readdir: (ino: number, _fh: number, offset: number): DirEntry[] => {
        this.#check('readdir');
        if (ino !== ROOT) throw Object.assign(new Error('not a directory'), { errno: E.ENOTDIR });
        const all: DirEntry[] = [
          { name: '.', ino: ROOT, mode: 0o040000 },
          { name: '..', ino: ROOT, mode: 0o040000 },
          { name: this.fileName, ino: FILE, mode: 0o100000 },
        ];
        return all.slice(offset).map((e, i) => ({ ...e, offset: offset + i + 1 }));
      },
      statfs: (): Statfs => {
        this.#check('statfs');
        return { bsize: 4096, blocks: 1 << 20, bfree: 1 << 19, files: 2, ffree: 0 };
      },
    };
  }
}
