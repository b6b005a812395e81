// FUSE operations over the block stack: the mount shows a directory holding
// `disk` (the device, one file of the volume's size) and `stats` (JSON counters).
// Byte ranges become block ranges: over a store that takes ranges (the cache) they
// pass straight through; over one that does not (the overlay), a partial-block write
// is a read-modify-write under a per-block lock, so two partial writes to a block
// never lose each other's bytes. fallocate punch-hole / zero-range zeroes (whole
// blocks are deleted); fsync and flush are barriers down to S3.
// Invariants: this is the only layer
// that turns errors into errno (through the binding), and it logs each one.
import { constants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import { isRangeStore, type BlockBytes, type BlockSlice, type BlockStore, type RangeStore } from '../store/types.js';
import { KeyedLock } from '../store/keyed-lock.js';
import { FALLOC_FL, type DirEntry, type Entry, type FuseHandlers, type Stat } from './binding.js';

const E = osConstants.errno;
export const ROOT_INO = 1;
export const DISK_INO = 2;
export const STATS_INO = 3;

export interface DeviceOptions {
  readonly readOnly: boolean;
  /** The current contents of the stats file. */
  readonly stats: () => string;
  readonly log: Logger;
}

export interface OpsStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  rmw: number;
  fsyncs: number;
  trims: number;
  errors: number;
}

export class DeviceOps {
  readonly stats: OpsStats = { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, rmw: 0, fsyncs: 0, trims: 0, errors: 0 };
  readonly size: number;
  #store: BlockStore;
  #opts: DeviceOptions;
  #log: Logger;
  #locks = new KeyedLock();
  #bs: number;

  /** The same store when it takes byte ranges (the cache): no whole-block copies; reads take no lock here. */
  #ranged: RangeStore | undefined;

  constructor(store: BlockStore, opts: DeviceOptions) {
    this.#store = store;
    this.#ranged = isRangeStore(store) ? store : undefined;
    this.#opts = opts;
    this.#bs = store.blockSize;
    this.size = store.blockSize * store.blockCount;
    this.#log = opts.log.child({ layer: 'fuse' });
  }

  /** Reads [offset, offset+length) of the device; the range must lie within it. */
  async read(offset: number, length: number): Promise<Buffer> {
    const bs = this.#bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const ranged = this.#ranged;
    if (ranged !== undefined) {
      // The store keeps reads and writes of one block consistent: a read needs no lock.
      if (first === last) return (await ranged.readRange(first, offset - first * bs, length)) ?? Buffer.alloc(length);
      const parts: Promise<Buffer>[] = [];
      for (let i = first; i <= last; i++) {
        const start = Math.max(offset, i * bs);
        const end = Math.min(offset + length, (i + 1) * bs);
        parts.push(ranged.readRange(i, start - i * bs, end - start).then((b) => b ?? Buffer.alloc(end - start)));
      }
      return Buffer.concat(await Promise.all(parts), length);
    }
    if (first === last) {
      // One block: hand back a view of it, no copy (the store's buffer is never mutated).
      const block = await this.#locks.run(first, () => this.#store.read(first));
      const at = offset - first * bs;
      return block === null ? Buffer.alloc(length) : block.subarray(at, at + length);
    }
    const out = Buffer.allocUnsafe(length);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const start = Math.max(offset, i * bs);
      const end = Math.min(offset + length, (i + 1) * bs);
      parts.push(
        this.#locks.run(i, () => this.#store.read(i)).then((block) => {
          if (block === null) out.fill(0, start - offset, end - offset);
          else block.copy(out, start - offset, start - i * bs, end - i * bs);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * As read(), but a range within one block may come back as a slice of the store's local
   * file (the FUSE reply reads it from there) or as bytes the store lends; the caller
   * releases either.
   */
  async readReply(offset: number, length: number): Promise<Buffer | BlockSlice | BlockBytes> {
    const first = Math.floor(offset / this.#bs);
    const ranged = this.#ranged;
    if (ranged?.replyRange !== undefined && first === Math.floor((offset + length - 1) / this.#bs)) {
      return (await ranged.replyRange(first, offset - first * this.#bs, length)) ?? Buffer.alloc(length);
    }
    return this.read(offset, length);
  }

  /**
   * Writes `data` at `offset`, borrowing it until this settles (as BlockStore.write does),
   * so it settles only once every block's part has: a part that fails early never leaves
   * another still reading `data` after the reply (the daemon's FUSE write buffers are
   * lent: detached at the reply and reused for the next write).
   */
  async write(offset: number, data: Buffer): Promise<void> {
    const bs = this.#bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + data.length - 1) / bs);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const start = Math.max(offset, i * bs);
      const end = Math.min(offset + data.length, (i + 1) * bs);
      const piece = data.subarray(start - offset, end - offset);
      parts.push(this.#locks.run(i, () => this.#writeBlock(i, start - i * bs, piece)));
    }
    await allSettled(parts);
  }

  /** Zeroes [offset, offset+length): whole blocks are deleted, edges rewritten. */
  async zero(offset: number, length: number): Promise<void> {
    const bs = this.#bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const parts: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      const start = Math.max(offset, i * bs);
      const end = Math.min(offset + length, (i + 1) * bs);
      parts.push(this.#locks.run(i, () => this.#writeBlock(i, start - i * bs, null, end - start)));
    }
    await allSettled(parts);
  }

  flush(): Promise<void> {
    return this.#store.flush();
  }

  /** Writes `piece` (or `zeroLength` zeros) at `at` within block i. Runs under the block's lock. */
  async #writeBlock(i: number, at: number, piece: Buffer | null, zeroLength = 0): Promise<void> {
    const bs = this.#bs;
    const length = piece?.length ?? zeroLength;
    if (this.#ranged !== undefined) {
      await this.#ranged.writeRange(i, at, piece, length);
      return;
    }
    if (at === 0 && length === bs) {
      await this.#store.write(i, piece);
      return;
    }
    this.stats.rmw++;
    // Absent blocks cost no request below (the zero map answers), so no special case here.
    const old = await this.#store.read(i);
    if (old === null && piece === null) return;
    const block = old === null ? Buffer.alloc(bs) : Buffer.from(old);
    if (piece === null) block.fill(0, at, at + length);
    else piece.copy(block, at);
    await this.#store.write(i, block);
  }

  handlers(): FuseHandlers {
    const ro = this.#opts.readOnly;
    const dirAttr: Stat = { mode: constants.S_IFDIR | 0o755, size: 0, nlink: 2 };
    const diskAttr = (): Stat => ({ mode: constants.S_IFREG | (ro ? 0o444 : 0o644), size: this.size, blocks: 0, blksize: this.#bs });
    // The stats file is served with direct I/O, so its reported size need not match its text.
    const statsAttr = (): Stat => ({ mode: constants.S_IFREG | 0o444, size: 0 });
    const attrOf = (ino: number): Stat => {
      if (ino === ROOT_INO) return dirAttr;
      if (ino === DISK_INO) return diskAttr();
      if (ino === STATS_INO) return statsAttr();
      throw errno(E.ENOENT, `no inode ${ino}`);
    };
    const entries: DirEntry[] = [
      { name: '.', ino: ROOT_INO, mode: constants.S_IFDIR },
      { name: '..', ino: ROOT_INO, mode: constants.S_IFDIR },
      { name: 'disk', ino: DISK_INO, mode: constants.S_IFREG },
      { name: 'stats', ino: STATS_INO, mode: constants.S_IFREG },
    ];
    const statsText = new Map<number, Buffer>();
    /** Disk descriptors that wrote since their last barrier, with a count of their writes. */
    const wrote = new Map<number, number>();
    let nextFh = 1;

    return {
      lookup: (parent, name): Entry => {
        if (parent === ROOT_INO && name === 'disk') return { ino: DISK_INO, attr: diskAttr() };
        if (parent === ROOT_INO && name === 'stats') return { ino: STATS_INO, attr: statsAttr() };
        throw errno(E.ENOENT, name);
      },
      getattr: (ino) => attrOf(ino),
      setattr: (ino, changes) => {
        const attr = attrOf(ino);
        // The device has the volume's size, always: ZFS never truncates a vdev.
        if (changes.size !== undefined && changes.size !== attr.size) throw errno(ino === DISK_INO ? E.EINVAL : E.EACCES, 'size is fixed');
        return attr;
      },
      open: (ino, flags) => {
        attrOf(ino);
        const writing = (flags & 3) !== constants.O_RDONLY; // O_ACCMODE
        if (ino === STATS_INO) {
          if (writing) throw errno(E.EACCES, 'stats is read-only');
          const fh = nextFh++;
          // A snapshot per open, so a reader sees one consistent document.
          statsText.set(fh, Buffer.from(this.#opts.stats()));
          return { fh, directIo: true };
        }
        if (ino === DISK_INO && writing && ro) throw errno(E.EROFS, 'read-only mount');
        if (ino !== DISK_INO) throw errno(E.EISDIR, 'a directory');
        return { fh: nextFh++, directIo: true };
      },
      release: (ino, fh) => {
        if (ino === STATS_INO) statsText.delete(fh);
        if (ino === DISK_INO) wrote.delete(fh);
      },
      read: (ino, fh, offset, size) =>
        this.#op('read', async () => {
          if (ino === STATS_INO) {
            const text = statsText.get(fh) ?? Buffer.from(this.#opts.stats());
            return text.subarray(offset, offset + size);
          }
          if (ino !== DISK_INO) throw errno(E.EISDIR, 'a directory');
          const length = Math.max(0, Math.min(size, this.size - offset));
          if (length === 0) return Buffer.alloc(0);
          const data = await this.readReply(offset, length);
          this.stats.reads++;
          this.stats.bytesRead += length;
          return data;
        }),
      write: (ino, fh, offset, data) =>
        this.#op('write', async () => {
          if (ino !== DISK_INO) throw errno(E.EACCES, 'only the disk is writable');
          if (ro) throw errno(E.EROFS, 'read-only mount');
          if (offset + data.length > this.size) throw errno(E.ENOSPC, `write beyond the end of the device (${this.size} bytes)`);
          wrote.set(fh, (wrote.get(fh) ?? 0) + 1);
          await this.write(offset, data);
          this.stats.writes++;
          this.stats.bytesWritten += data.length;
          return data.length;
        }),
      // close(): a barrier only for a descriptor that wrote since its last one; a reader's
      // close costs nothing (and cannot fail while S3 is away).
      flush: (ino, fh) => {
        const writes = wrote.get(fh);
        if (ino !== DISK_INO || ro || writes === undefined) return undefined;
        return this.#op('flush', async () => {
          await this.flush();
          if (wrote.get(fh) === writes) wrote.delete(fh);
        });
      },
      fsync: (ino) =>
        this.#op('fsync', async () => {
          if (ino !== DISK_INO) return;
          this.stats.fsyncs++;
          await this.flush();
        }),
      fallocate: (ino, fh, offset, length, mode) =>
        this.#op('fallocate', async () => {
          if (ino !== DISK_INO) throw errno(E.EOPNOTSUPP, 'not the disk');
          if (ro) throw errno(E.EROFS, 'read-only mount');
          const zeroing = (mode & (FALLOC_FL.PUNCH_HOLE | FALLOC_FL.ZERO_RANGE)) !== 0;
          const known = FALLOC_FL.KEEP_SIZE | FALLOC_FL.PUNCH_HOLE | FALLOC_FL.ZERO_RANGE;
          if ((mode & ~known) !== 0) throw errno(E.EOPNOTSUPP, `fallocate mode ${mode}`);
          const end = Math.min(offset + length, this.size);
          if (!zeroing) {
            // Plain allocation: the device is thin, every block already "exists".
            if (offset + length > this.size && (mode & FALLOC_FL.KEEP_SIZE) === 0) throw errno(E.EFBIG, 'the device cannot grow');
            return;
          }
          if (end <= offset) return;
          wrote.set(fh, (wrote.get(fh) ?? 0) + 1);
          this.stats.trims++;
          await this.zero(offset, end - offset);
        }),
      opendir: (ino) => {
        if (ino !== ROOT_INO) throw errno(E.ENOTDIR, 'not a directory');
      },
      readdir: (ino, _fh, offset) => {
        if (ino !== ROOT_INO) throw errno(E.ENOTDIR, 'not a directory');
        return entries.slice(offset).map((e, i) => ({ ...e, offset: offset + i + 1 }));
      },
      statfs: () => ({
        bsize: this.#bs,
        frsize: 4096,
        blocks: Math.floor(this.size / 4096),
        bfree: 0,
        bavail: 0,
        files: 3,
        ffree: 0,
        namemax: 255,
      }),
    };
  }

  async #op<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.stats.errors++;
      const e = err as { errno?: number; code?: string; message?: string };
      this.#log.error({ op, code: e.code, errno: e.errno, err: e.message }, 'request failed');
      throw err;
    }
  }
}

function errno(n: number, message: string): S3zError {
  return new S3zError('EDEVICE', message, { errno: n });
}

/** As Promise.all, but waits for every part before rejecting with the first failure. */
async function allSettled(parts: Promise<void>[]): Promise<void> {
  if (parts.length === 1) return parts[0];
  const results = await Promise.allSettled(parts);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
