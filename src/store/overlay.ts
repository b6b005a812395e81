// The overlay layer, top of the stack in --overlay mounts: restore like an EBS
// volume. Writes stay local, kept across overlay mounts of the same cache folder; the
// volume below is never changed. Overlay data lives in sparse slab files of its own
// (<cacheDir>/overlay, the cache's layout), read and written by byte range; LMDB's
// `overlay` table holds one small record per block (cache-records.ts layouts).
//
// Block states (per index):
//   untouched  no record: reads go to the store below (the cache, ranged; libfuse's
//              threads answer them directly where the cache grants it)
//   written    UNFLUSHED or DIRTY + a CRC-32 per segment (cache-records.ts); the file holds the
//              data. UNFLUSHED until a flush made its bytes durable on disk
//   zeroed     ZEROS: reads return zeros, whatever is below
//   legacy     an earlier build's entry (SHA-256 + the whole block, or 32 zero bytes):
//              checked, then moved into the file at its first use
//
// Invariants:
//   - nothing written here ever reaches the store below: no write, no flush;
//   - a write resolves once its bytes are in the file and its record is committed, so
//     a kill -9 keeps every acknowledged write; flush() makes them durable on disk
//     (fdatasync), which is an overlay mount's barrier;
//   - a written block is checked against its record once per mount, before its first
//     use, then read by range. After a crash of the process its file is authoritative
//     (the kernel kept every write, maybe one not yet acknowledged); after a reboot
//     only a block written since its last flush may differ (ZFS tolerates losing
//     unflushed writes). Any other mismatch is ECORRUPT: wrong bytes never go up, and
//     never silently the older data below;
//   - `shadow(i)` is told before block i first gets a record, and shadows(i) is true
//     from then on: reads that bypass this layer (direct reads of the cache's copy)
//     must stop first;
//   - memory holds the blocks checked in this mount and those written since the last
//     flush, never block data beyond the writes in flight.
import path from 'node:path';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import { isRangeStore, type BlockReply, type BlockStore, type RangeStore, type ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen, checkRange } from './checks.js';
import { isZero, sha256Raw } from './checksum.js';
import { DIRTY, ZEROS, ZERO_RECORD, checksumsOf, layoutSegment, recordAfterWrite } from './cache-records.js';
import { KeyedLock } from './keyed-lock.js';
import { SMALL_READ, SlabFiles } from './slab-file.js';

/** Nothing to configure yet; kept for the layer's uniform constructor. */
export type OverlayConfig = Record<string, never>;

export interface OverlayStats {
  /** Blocks with an overlay record (written or zeroed). */
  blocks: number;
  /** Device bytes those records shadow (blocks × blockSize; zeroed ones included). */
  bytes: number;
  /** Reads answered from the overlay. */
  hits: number;
  /** Blocks whose local copy failed its check. */
  corrupt: number;
}

export interface OverlayDeps {
  readonly log: Logger;
  readonly db: LocalDb;
  /** The machine restarted since the cache dir was last used (the cache's boot check). */
  readonly rebooted?: boolean;
  /** Told before a block first gets a record: reads of it that bypass this layer must stop. */
  readonly shadow?: (index: number) => void;
}

/** A written block whose last writes may not be on disk yet (DIRTY once flushed). */
const UNFLUSHED = 4;
const LEGACY_HEADER = 32;
/** An earlier build's entry for a block written as zeros. */
export const OVERLAY_LEGACY_ZERO: Buffer = Buffer.alloc(LEGACY_HEADER);

/** Where a cache dir keeps its overlay's block data. */
export function overlayDir(cacheDir: string): string {
  return path.join(cacheDir, 'overlay');
}

export class OverlayStore implements RangeStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats: OverlayStats;
  #inner: BlockStore;
  #db: LocalDb;
  #log: Logger;
  #files: SlabFiles;
  #locks = new KeyedLock();
  #rebooted: boolean;
  #shadow: ((index: number) => void) | undefined;
  #closed = false;
  /** Blocks checked (or written) in this mount → true when zeroed. */
  #verified = new Map<number, boolean>();
  /** Blocks written since the last flush → the number of their latest write. */
  #unflushed = new Map<number, number>();
  #writeNo = 0;
  /** Blocks getting their first record: shadowed already. */
  #taking = new Set<number>();
  #writes = new Set<Promise<unknown>>();
  #fileReads = new Set<Promise<unknown>>();

  constructor(_config: OverlayConfig, inner: BlockStore, deps: OverlayDeps) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#db = deps.db;
    this.#log = deps.log.child({ layer: 'overlay' });
    this.#rebooted = deps.rebooted ?? false;
    this.#shadow = deps.shadow;
    this.#files = new SlabFiles(overlayDir(deps.db.dir), this.blockSize);
    // A count, not a scan: reading every record would read a legacy overlay whole.
    const blocks = this.#db.overlay.getCount();
    this.stats = { blocks, bytes: blocks * this.blockSize, hits: 0, corrupt: 0 };
  }

  /** True when reads of the block must come to this layer: it has (or is getting) a record. */
  shadows(index: number): boolean {
    return this.#taking.has(index) || this.#exists(index);
  }

  read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    return this.readRange(index, 0, this.blockSize, opts);
  }

  async readRange(index: number, at: number, length: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    checkRange(this, index, at, length);
    if (!this.shadows(index)) return this.#below(index, at, length, opts);
    const zeroed = await this.#ensureVerified(index);
    if (zeroed === undefined) return this.#below(index, at, length, opts); // a first write that failed
    this.stats.hits++;
    if (zeroed) return null;
    checkOpen(this.#closed);
    if (length <= SMALL_READ) return this.#files.readNow(index, at, length);
    const read = this.#files.read(index, at, length);
    this.#fileReads.add(read);
    try {
      return await read;
    } finally {
      this.#fileReads.delete(read);
    }
  }

  /** Untouched blocks as the store below replies (a slice of the cache's file, lent bytes); overlay blocks as buffers. */
  replyRange(index: number, at: number, length: number, opts?: ReadOptions): Promise<BlockReply> {
    const inner = this.#inner;
    if (!this.#closed && isRangeStore(inner) && inner.replyRange !== undefined && !this.shadows(index)) {
      checkRange(this, index, at, length);
      return inner.replyRange(index, at, length, opts);
    }
    return this.readRange(index, at, length, opts);
  }

  write(index: number, data: Buffer | null): Promise<void> {
    try {
      checkBlock(this, index, data);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.writeRange(index, 0, data, this.blockSize);
  }

  async writeRange(index: number, at: number, data: Buffer | null, length: number): Promise<void> {
    checkIndex(this, index, this.#closed);
    const len = data?.length ?? length;
    checkRange(this, index, at, len);
    const write = this.#locks.run(index, () => this.#writeLocked(index, at, data, len));
    this.#writes.add(write);
    try {
      await write;
    } finally {
      this.#writes.delete(write);
    }
  }

  /** Makes every resolved write durable on the local disk; nothing goes below. */
  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#sync();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#writes);
    try {
      await this.#sync();
    } finally {
      await Promise.allSettled(this.#fileReads);
      this.#files.close();
      await this.#inner.close();
    }
  }

  async #below(index: number, at: number, length: number, opts?: ReadOptions): Promise<Buffer | null> {
    const inner = this.#inner;
    if (isRangeStore(inner)) return inner.readRange(index, at, length, opts);
    const block = await inner.read(index, opts);
    return block === null || length === this.blockSize ? block : block.subarray(at, at + length);
  }

  async #writeLocked(index: number, at: number, data: Buffer | null, length: number): Promise<void> {
    checkOpen(this.#closed);
    const bs = this.blockSize;
    const whole = at === 0 && length === bs;
    const stored = this.#db.overlay.get(index);
    let record: Buffer | undefined = stored === undefined ? undefined : Buffer.from(stored);
    const added = record === undefined;
    if (added) {
      this.#taking.add(index);
      this.#shadow?.(index);
    }
    try {
      // A whole-block write needs nothing of the old copy, so it also repairs a corrupt one.
      if (record !== undefined && !whole && !this.#verified.has(index)) record = await this.#verifyLocked(index, record);
      let next: Buffer;
      if (whole && (data === null || isZero(data))) {
        this.#files.punch(index);
        next = Buffer.from(ZERO_RECORD);
      } else if (whole) {
        await this.#files.write(index, 0, data as Buffer);
        next = checksumsOf(bs, data as Buffer);
      } else {
        const piece = data ?? Buffer.alloc(length);
        if (record === undefined || record[0] === ZEROS) {
          // The block's first overlay write (or one over zeros): the whole block goes in
          // once, what is below with the piece in it, so later writes can be ranged.
          const base = Buffer.alloc(bs);
          if (record === undefined) (await this.#inner.read(index))?.copy(base);
          piece.copy(base, at);
          await this.#files.write(index, 0, base);
          next = checksumsOf(bs, base);
        } else {
          await this.#files.write(index, at, piece);
          const previous = Buffer.from(record);
          previous[0] = DIRTY; // the layout recordAfterWrite() builds on (UNFLUSHED is only a flag)
          next = await recordAfterWrite(bs, previous, at, piece, (from, len) => this.#files.read(index, from, len));
        }
      }
      if (next[0] === DIRTY) next[0] = UNFLUSHED;
      if (next[0] === UNFLUSHED) this.#unflushed.set(index, ++this.#writeNo);
      await this.#db.transaction(() => this.#db.overlay.putSync(index, next));
      this.#verified.set(index, next[0] === ZEROS);
      if (added) this.#count(1);
    } catch (err) {
      this.#log.error({ block: index, err: (err as Error)?.message }, 'overlay write failed');
      throw err;
    } finally {
      if (added) this.#taking.delete(index);
    }
  }

  /** Checks a block once per mount: true when zeroed, false for data, undefined when it has no record. */
  async #ensureVerified(index: number): Promise<boolean | undefined> {
    const known = this.#verified.get(index);
    if (known !== undefined) return known;
    return this.#locks.run(index, async () => {
      const again = this.#verified.get(index);
      if (again !== undefined) return again;
      const stored = this.#db.overlay.get(index);
      if (stored === undefined) return undefined;
      const record = await this.#verifyLocked(index, Buffer.from(stored));
      return record[0] === ZEROS;
    });
  }

  /** Checks the block's file against its record (moving a legacy entry in first); the record to use from now on. */
  async #verifyLocked(index: number, record: Buffer): Promise<Buffer> {
    const bs = this.blockSize;
    if (record.length === LEGACY_HEADER) {
      if (!record.equals(OVERLAY_LEGACY_ZERO)) return this.#corrupt(index, 'its zero marker is damaged');
      this.#files.punch(index);
      return this.#settle(index, Buffer.from(ZERO_RECORD));
    }
    if (record.length === LEGACY_HEADER + bs) {
      const data = record.subarray(LEGACY_HEADER);
      if (!sha256Raw(data).equals(record.subarray(0, LEGACY_HEADER))) return this.#corrupt(index, 'its checksum does not match');
      // The LMDB entry is the only copy: the file must hold it durably before it goes.
      await this.#files.write(index, 0, data);
      await this.#files.sync();
      this.#log.debug({ block: index }, 'overlay entry moved into the overlay files');
      return this.#settle(index, checksumsOf(bs, data));
    }
    if (record.length === 1 && record[0] === ZEROS) {
      this.#verified.set(index, true);
      return record;
    }
    // UNFLUSHED is only a flag on DIRTY's layout.
    const segment = record[0] === DIRTY || record[0] === UNFLUSHED ? layoutSegment(bs, record.length) : undefined;
    if (segment !== undefined) {
      const actual = checksumsOf(bs, await this.#files.read(index, 0, bs), segment);
      if (actual.subarray(1).equals(record.subarray(1))) {
        this.#verified.set(index, false);
        return record;
      }
      if (!this.#rebooted || record[0] === UNFLUSHED) {
        this.#log.warn({ block: index, rebooted: this.#rebooted }, 'overlay block differs from its record after a stop; keeping what its file holds');
        actual[0] = UNFLUSHED;
        this.#unflushed.set(index, ++this.#writeNo);
        return this.#settle(index, actual);
      }
      return this.#corrupt(index, 'its bytes do not match the checksums recorded for them');
    }
    return this.#corrupt(index, `its record is not one this build knows (${record.length} bytes)`);
  }

  /** Commits a block's record as checked. */
  async #settle(index: number, record: Buffer): Promise<Buffer> {
    await this.#db.transaction(() => this.#db.overlay.putSync(index, record));
    this.#verified.set(index, record[0] === ZEROS);
    return record;
  }

  #corrupt(index: number, why: string): never {
    this.stats.corrupt++;
    this.#log.error({ block: index, why }, 'overlay block failed its check');
    throw new S3zError('ECORRUPT', `block ${index}: the local overlay copy is corrupt (${why}; ${overlayDir(this.#db.dir)})`);
  }

  /** Makes the overlay files durable, then marks the blocks written before as flushed, durably too. */
  async #sync(): Promise<void> {
    const marked = [...this.#unflushed];
    await this.#files.sync();
    if (marked.length > 0) await this.#mark(marked);
    // A record that a restart could undo would no longer match its file's synced bytes.
    await this.#db.durable();
  }

  #mark(marked: Array<[number, number]>): Promise<unknown> {
    return this.#db.transaction(() => {
      for (const [index, writeNo] of marked) {
        // Written again since the files were synced: still unflushed.
        if (this.#unflushed.get(index) !== writeNo) continue;
        this.#unflushed.delete(index);
        const record = this.#db.overlay.get(index);
        if (record === undefined || record[0] !== UNFLUSHED) continue;
        const flushed = Buffer.from(record);
        flushed[0] = DIRTY;
        this.#db.overlay.putSync(index, flushed);
      }
    });
  }

  /** Key-only lookup: doesExist() would copy a legacy entry's whole value out of LMDB. */
  #exists(index: number): boolean {
    for (const _ of this.#db.overlay.getKeys({ start: index, end: index + 1, limit: 1 })) return true;
    return false;
  }

  #count(delta: number): void {
    this.stats.blocks += delta;
    this.stats.bytes += delta * this.blockSize;
  }
}
