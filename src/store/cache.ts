// The cache layer: block data in local slab files (slab-file.ts), metadata and the
// write-back journal in LMDB, uploads scheduled by write-back.ts.
//
// Block states (per index):
//   absent   nothing local: a read misses and asks the store below; its file range
//            is made zeros before a partial write builds on it
//   clean    the file holds what S3 holds; LMDB `local` has its SHA-256; in the
//            eviction LRU (eviction punches the range out and drops the record)
//   dirty    the file holds a newer write; LMDB `local` has a CRC-32 per segment
//            (cache-records.ts; or says "zeros", the range then punched) and `dirty` its write
//            sequence number; never evicted; uploaded by write-back
// Reads and writes take byte ranges: a 4 KiB read of a local block is a 4 KiB read of
// its file, a 128 KiB write is a 128 KiB write plus the CRC of the segments it touched.
// A miss is fetched into a reused buffer (one fetch per block, whoever asks, cache-fills.ts),
// written to the file, and every reader is then answered from the file, like a hit; while
// at most EARLY_FILLS fills are in progress, a reader is answered as soon as the block is
// verified, without waiting for the file write: a small range (ZFS's 128 KiB) with a copy,
// a larger one for a reply with the fetched bytes themselves, lent until the reply is out.
//
// Invariants
//   - a write resolves only once its bytes are in the file and its journal entry is
//     committed in LMDB, so a kill -9 loses no acknowledged write (the kernel keeps
//     the file's pages);
//   - a local block is verified once per mount before its first use: a clean one
//     against its SHA-256 (a mismatch drops it; it is fetched again), a dirty one at
//     start: after a reboot (the boot id changed), a dirty block whose bytes do not
//     match its journaled CRCs is never uploaded: it is dropped, and logged;
//   - on start, a journal left behind is replayed to S3 before the first read;
//   - flush() resolves once every write that resolved before it is in S3;
//   - dirty data is bounded (writers wait), clean data by the cache size (LRU);
//     memory holds indices and states, never block data beyond the requests in flight;
//   - one block's writes, fills and upload snapshots run one at a time (a per-block
//     lock); a range being read is never punched out under the reader (block-pins.ts);
//   - with direct reads (useDirectReads, direct-grants.ts: the FUSE binding answers reads
//     of granted blocks from their file by itself), a block is granted only while it is held,
//     verified in this mount and not written as zeros, and revoked (which waits for
//     the direct reads of it in progress) before a write changes its file range or
//     before it is dropped; close() turns direct reads off before the files close.
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import { S3zError, isS3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import type { BlockReply, BlockStore, DirectReads, RangeStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen, checkRange } from './checks.js';
import { isZero, sha256Of } from './checksum.js';
import { KeyedLock } from './keyed-lock.js';
import { BlockBuffers } from './block-buffers.js';
import { BlockPins } from './block-pins.js';
import { DirectGrants } from './direct-grants.js';
import { SMALL_READ, SlabFiles, slabDir } from './slab-file.js';
import { ZEROS, ZERO_RECORD, cleanRecord, cleanSum, recordAfterWrite, zeroDirtyRecord } from './cache-records.js';
import { DirtyCover } from './dirty-cover.js';
import { BlockFill, isEarly, type Early, type Local } from './cache-fills.js';
import { DiskRoom } from './disk-room.js';
import { migrate, noteBoot, recheckDirty } from './cache-recovery.js';
import { WriteBack } from './write-back.js';
import { counted } from '../util/words.js';
import { uploadsFor, type CacheConfig, type CacheStats } from './cache-config.js';

export { DEFAULT_CACHE_CONFIG, uploadsFor, type CacheConfig, type CacheStats } from './cache-config.js';

/** Fill buffers kept for reuse: as many as fills usually run at once (the read-ahead's). */
const FILL_BUFFERS = 16;

/**
 * Fills in progress beyond which a reader of a block being fetched waits for the file
 * like any other: one answered early may start its next fill before this one has written
 * its block, so without a bound a reader faster than the cache disk would pile up fills,
 * each holding a block buffer.
 */
const EARLY_FILLS = FILL_BUFFERS;

/** What a reader of a block being fetched may be answered with before the file write. */
interface Want {
  readonly at: number;
  readonly length: number;
  /** The fetched bytes themselves, until release() (a reply), rather than a copy. */
  readonly lend: boolean;
}

export class CacheStore implements RangeStore {
  readonly blockSize: number;
  readonly blockCount: number;
  #inner: BlockStore;
  #db: LocalDb;
  #files: SlabFiles;
  #config: CacheConfig;
  #log: Logger;
  #wb: WriteBack;
  #closed = false;
  #started = false;
  #rebooted = false;
  /** Clean blocks, in LRU order; eviction punches them out. */
  #lru: LRUCache<number, true>;
  /** Dirty blocks written as zeros (no bytes in the file). */
  #zeroDirty = new Set<number>();
  /** Local blocks checked against their checksum in this mount. */
  #verified = new Set<number>();
  #verifying = new Map<number, Promise<boolean>>();
  /** Misses being fetched (one request per block, whoever asks). */
  #fills = new Map<number, BlockFill>();
  #locks = new KeyedLock();
  /** Reads in progress per block (and slices out), and the drops waiting for them. */
  #pins = new BlockPins();
  /** Per dirty block, the segments written since it went up (dirty-cover.ts). */
  #cover: DirtyCover;
  /** Local writes the disk refused are tried again after making room (disk-room.ts). */
  #room: DiskRoom;
  /** What each upload reads its block into: one per upload in flight, used again. */
  #uploadBuffers: BlockBuffers;
  /**
   * What fills (and the bases of partial writes) read their block into from below, and
   * what a block's check and a write's new checksums read its file into; the bytes never
   * leave this layer in it: readers read the block's file once it is there. Shared with
   * the read-ahead below when compose gives it (deps.fillBuffers): a fill is then handed
   * the read-ahead's buffer instead of a copy.
   */
  #fillBuffers: BlockBuffers;
  /** Reads answered below JS for granted blocks (useDirectReads). */
  #grants: DirectGrants;
  #stats = { hit: 0, miss: 0, evictions: 0, corrupt: 0, replayed: 0, localErrors: 0, dropped: 0, slices: 0, fromFetch: 0, writeOuts: 0 };

  constructor(config: CacheConfig, inner: BlockStore, deps: { db: LocalDb; log: Logger; fillBuffers?: BlockBuffers }) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#db = deps.db;
    this.#config = config;
    this.#log = deps.log.child({ layer: 'cache' });
    this.#files = new SlabFiles(slabDir(deps.db.dir), this.blockSize);
    const uploads = uploadsFor(config.uploadConcurrency, this.blockSize);
    this.#uploadBuffers = new BlockBuffers(this.blockSize, uploads);
    if (deps.fillBuffers !== undefined && deps.fillBuffers.size !== this.blockSize) {
      throw new RangeError(`fill buffers of ${deps.fillBuffers.size} bytes for ${this.blockSize}-byte blocks`);
    }
    this.#fillBuffers = deps.fillBuffers ?? new BlockBuffers(this.blockSize, FILL_BUFFERS);
    this.#cover = new DirtyCover(this.blockSize);
    this.#room = new DiskRoom({
      dir: this.#db.dir,
      shed: () => this.#shed(Math.max(4, Math.ceil(this.#lru.size / 8))),
      // A failed commit is its writer's to report.
      settled: () => this.#db.committed().catch(() => {}),
      closed: () => this.#closed,
      refused: () => this.#stats.localErrors++,
      log: this.#log,
    });
    this.#wb = new WriteBack(
      { uploadConcurrency: uploads, maxDirtyBytes: config.maxDirtyBytes, writeDelayMs: config.writeDelayMs, blockSize: this.blockSize },
      { upload: (i) => this.#upload(i), clean: (i, seq, sent) => this.#clean(i, seq, sent), canRetry: () => !this.#closed && !this.#db.closed },
      this.#log,
    );
    this.#grants = new DirectGrants({
      eligible: (i) => !this.#closed && this.#verified.has(i) && this.holds(i) && !this.#zeroDirty.has(i),
      fileOf: (i) => this.#files.fileOf(i),
      touched: (i) => {
        if (this.#lru.has(i)) this.#lru.get(i); // recently used
      },
    });
    this.#lru = new LRUCache<number, true>({
      max: Math.max(1, Math.floor(config.maxBytes / this.blockSize)),
      dispose: (_v, index, reason) => {
        if (reason === 'evict') this.#evict(index);
      },
    });
  }

  get stats(): CacheStats {
    const blocks = this.#lru.size + this.#wb.size;
    return {
      ...this.#stats,
      ...this.#wb.stats,
      blocks,
      bytes: blocks * this.blockSize,
      dirtyBlocks: this.#wb.size,
      inflight: this.#wb.inflight,
    };
  }

  /** True once start() found that the machine restarted since the cache dir was last used. */
  get rebooted(): boolean {
    return this.#rebooted;
  }

  /** True when the block is held locally: reading it costs no request. */
  holds(index: number): boolean {
    return this.#lru.has(index) || this.#wb.has(index);
  }

  /**
   * From now on, verified local blocks are granted to `direct` (reads of them are then
   * answered without this layer) and revoked before their bytes change or leave. Reads
   * answered there count as uses for eviction (direct-grants.ts).
   */
  useDirectReads(direct: DirectReads): void {
    if (!this.#closed) this.#grants.start(direct, this.#verified);
  }

  /**
   * Migrates an older cache dir, loads the journal and the local index, checks the
   * dirty blocks' bytes, then replays the journal to S3. Must complete before the
   * device serves anything.
   */
  async start(): Promise<void> {
    const recovery = { db: this.#db, files: this.#files, blockSize: this.blockSize, log: this.#log };
    await migrate(recovery);
    const rebooted = await noteBoot(this.#db);
    this.#rebooted = rebooted;
    for (const { key, value } of this.#db.dirty.getRange()) this.#wb.restore(key, value);
    for (const key of this.#db.local.getKeys()) if (!this.#wb.has(key)) this.#lru.set(key, true);
    for (const index of [...this.#wb.indices()]) {
      const outcome = await recheckDirty(recovery, index, rebooted);
      if (outcome === 'dropped') {
        this.#stats.dropped++;
        this.#wb.forget(index);
        continue;
      }
      if (outcome === 'zeros') this.#zeroDirty.add(index);
      this.#verified.add(index);
    }
    this.#started = true;
    if (this.#wb.size === 0) return;
    if (this.#config.readOnly) {
      throw new S3zError('EMOUNT', `the cache holds ${counted(this.#wb.size, 'block')} not yet in S3, left by a read-write mount that did not finish; mount read-write once to upload them`);
    }
    this.#log.warn({ blocks: this.#wb.size }, 'replaying the write-back journal to S3');
    this.#stats.replayed = this.#wb.size;
    this.#wb.all();
    await this.flush();
  }

  read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    return this.readRange(index, 0, this.blockSize, opts);
  }

  async readRange(index: number, at: number, length: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    checkRange(this, index, at, length);
    this.#pins.pin(index);
    let early = false;
    try {
      const local = await this.#local(index, opts, length <= SMALL_READ ? { at, length, lend: false } : undefined);
      if (!isEarly(local)) return local === true ? this.#readFile(index, at, length) : this.#rangeOf(local, at, length);
      this.#doneReadingAfter(index, local.fill);
      early = true;
      return local.bytes;
    } finally {
      if (!early) this.#doneReading(index);
    }
  }

  /**
   * The same bytes as readRange, for a reply: a read of more than SMALL_READ bytes comes
   * back as a slice of the block's slab file (fetched into it first on a miss), or, of a
   * block being fetched, as the fetched bytes themselves; either pinned (a reader: not
   * punched out) until release(). Smaller reads, zeros (null) and blocks the file could
   * not take come back as buffers.
   */
  async replyRange(index: number, at: number, length: number, opts?: ReadOptions): Promise<BlockReply> {
    if (length <= SMALL_READ) return this.readRange(index, at, length, opts);
    checkIndex(this, index, this.#closed);
    checkRange(this, index, at, length);
    this.#pins.pin(index);
    let pinned = false;
    try {
      const local = await this.#local(index, opts, { at, length, lend: true });
      if (isEarly(local)) {
        this.#doneReadingAfter(index, local.fill);
        pinned = true;
        return local; // its bytes, until release()
      }
      if (local !== true) return this.#rangeOf(local, at, length);
      checkOpen(this.#closed);
      // Undefined past the file's end (zeros, which read() makes).
      const where = this.#files.where(index, at, length);
      if (where === undefined) return await this.#files.read(index, at, length);
      this.#stats.slices++;
      this.#pins.sliceOut();
      pinned = true;
      let released = false;
      return {
        fd: where.fd,
        position: where.position,
        length,
        release: () => {
          if (released) return;
          released = true;
          this.#doneReading(index);
          this.#pins.sliceBack();
        },
      };
    } finally {
      if (!pinned) this.#doneReading(index);
    }
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
    checkRange(this, index, at, data?.length ?? length);
    if (this.#config.readOnly) throw new S3zError('EROFS', `block ${index}: the device is read-only`);
    await this.#wb.roomFor(index, () => checkOpen(this.#closed));
    await this.#locks.run(index, () => this.#writeLocked(index, at, data, data?.length ?? length));
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#wb.flush();
    await this.#inner.flush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#started) await this.flush();
    this.#closed = true;
    this.#wb.close();
    // A reader answered from its fetch leaves the fill writing the block's file and record:
    // both must be done before they close (its outcome is its readers' to report).
    await Promise.allSettled([...this.#fills.values()].map((fill) => fill.done));
    await this.#inner.close();
    // A slice's reader (the kernel) reads its fd: the files stay open until all are back.
    // The FUSE session releases every slice it got, even for requests it abandoned.
    await this.#pins.slicesBack();
    this.#grants.stop();
    this.#files.close();
  }

  // -------------------------------------------------------------------------
  // reads

  /** Checks a local block once per mount; false when it failed and was dropped (fetch it again). */
  #ensureVerified(index: number): Promise<boolean> | boolean {
    if (this.#verified.has(index)) return true;
    let p = this.#verifying.get(index);
    if (p === undefined) {
      p = this.#verify(index).finally(() => this.#verifying.delete(index));
      this.#verifying.set(index, p);
    }
    return p;
  }

  async #verify(index: number): Promise<boolean> {
    if (this.#wb.has(index)) {
      // Dirty blocks were checked at start or written in this mount.
      this.#verified.add(index);
      this.#grants.grant(index);
      return true;
    }
    const sum = cleanSum(this.#db.local.get(index));
    if (sum !== undefined) {
      // Pooled (shared) memory: no fresh 1 MiB per block, and the hash worker reads it in place.
      const ok = await this.#fillBuffers.lend(async (buf) => (await sha256Of(await this.#files.readInto(index, 0, buf))).equals(sum));
      if (ok) {
        this.#verified.add(index);
        this.#grants.grant(index);
        return true;
      }
    }
    this.#stats.corrupt++;
    this.#log.warn({ block: index }, 'cached block failed its checksum; fetching it again');
    return false;
  }

  /**
   * Makes a block local for a reader (who holds it as a reader, so it is not punched out
   * under them): a hit once verified, else one fetch from below per block, whoever asks.
   * A reader of a block being fetched may be answered from the fetched bytes instead
   * (`want`), as soon as the block is verified.
   */
  #local(index: number, opts?: ReadOptions): Promise<Local>;
  #local(index: number, opts: ReadOptions | undefined, want: Want | undefined): Promise<Local | Early>;
  async #local(index: number, opts?: ReadOptions, want?: Want): Promise<Local | Early> {
    if (this.holds(index)) {
      this.#lru.get(index); // recently used
      if (this.#zeroDirty.has(index)) {
        this.#stats.hit++;
        return null;
      }
      if (await this.#ensureVerified(index)) {
        this.#stats.hit++;
        return true;
      }
      if (this.#lru.delete(index)) this.#drop(index);
    }
    this.#stats.miss++;
    let fill = this.#fills.get(index);
    if (fill === undefined) {
      const started = new BlockFill();
      started.done = this.#locks.run(index, () => this.#fillLocked(index, started, opts)).finally(() => this.#fills.delete(index));
      this.#fills.set(index, started);
      fill = started;
    }
    if (want === undefined || this.#fills.size > EARLY_FILLS) return fill.done;
    const local = await fill.early(want.at, want.length, want.lend);
    if (isEarly(local)) this.#stats.fromFetch++;
    return local;
  }

  /**
   * A reader answered before its fill was done stays one until the fill is: a drop that
   * waits for readers (the block's old bytes failed their check) must not punch out what
   * the fill is writing.
   */
  #doneReadingAfter(index: number, fill: Promise<Local>): void {
    const done = (): void => this.#doneReading(index);
    fill.then(done, done);
  }

  /** The range of a block held only in memory (the file refused it), or null for zeros. */
  #rangeOf(block: Buffer | null, at: number, length: number): Buffer | null {
    return block === null || (at === 0 && length === this.blockSize) ? block : block.subarray(at, at + length);
  }

  /** Small reads of a verified block are preads on this thread (SMALL_READ says why). */
  #readFile(index: number, at: number, length: number): Buffer | Promise<Buffer> {
    return length <= SMALL_READ ? this.#files.readNow(index, at, length) : this.#files.read(index, at, length);
  }

  /** Fetches a block from below into the file (under the block's lock). */
  async #fillLocked(index: number, fill: BlockFill, opts?: ReadOptions): Promise<Local> {
    if (this.holds(index) && (this.#zeroDirty.has(index) || (await this.#ensureVerified(index)))) {
      // Filled by the one before us in the lock queue.
      return this.#zeroDirty.has(index) ? null : true;
    }
    const buf = this.#fillBuffers.acquire();
    // The one pool buffer this fill holds: `buf`, or the read-ahead's own.
    let held = buf;
    try {
      const data = await this.#inner.read(index, { ...opts, into: buf, pool: this.#fillBuffers });
      if (data === null) return null;
      if (data.buffer !== buf.buffer && this.#fillBuffers.owns(data)) {
        // A read-ahead's buffer of the same pool, handed over: ours to give back instead.
        this.#fillBuffers.release(buf);
        held = data;
      }
      // Every layer below has checked it (the S3 store's SHA-256, the guard): the bytes the
      // file is about to get, so readers may be answered from it now.
      fill.publish(data);
      try {
        return await this.#keepFetched(index, data);
      } finally {
        // Lent ranges come back as their replies go out, on this thread, soon.
        await fill.retire();
      }
    } finally {
      this.#fillBuffers.release(held);
    }
  }

  /** Writes a fetched (verified) block to its file and records it clean; its buffer is lent, not kept. */
  async #keepFetched(index: number, data: Buffer): Promise<Local> {
    // The buffer goes back to the pool: a reader that cannot read the file gets a copy.
    if (this.#closed) return Buffer.from(data);
    try {
      await this.#localWrite(index, 0, data);
    } catch (err) {
      // Serving the read matters more than caching it.
      this.#log.warn({ block: index, err: (err as Error).message }, 'could not cache a fetched block');
      return Buffer.from(data);
    }
    // The S3 store checked this buffer's SHA-256 (memoized per buffer): no new hash.
    const record = cleanRecord(await sha256Of(data));
    this.#db.local.put(index, record).catch((err: unknown) => this.#localFailed('fill', index, err));
    this.#verified.add(index);
    this.#lru.set(index, true);
    this.#grants.grant(index);
    return true;
  }

  /** A reader of the block (pinned since #pins.pin) is done: a drop that waited for it happens now. */
  #doneReading(index: number): void {
    if (this.#pins.unpin(index) && !this.holds(index)) this.#punchOut(index);
  }

  // -------------------------------------------------------------------------
  // writes

  async #writeLocked(index: number, at: number, data: Buffer | null, length: number): Promise<void> {
    const bs = this.blockSize;
    const whole = at === 0 && length === bs;
    const wasDirty = this.#wb.has(index);
    const wasZero = this.#zeroDirty.has(index);
    // No longer clean: it must not be evicted while we change it.
    const wasClean = this.#lru.delete(index);
    // Its bytes are about to change (or be punched): nothing reads them below JS meanwhile.
    this.#grants.revoke(index);
    // A partial write builds on the block as S3 holds it (absent blocks cost no request),
    // or on a clean local copy once that copy has proven itself.
    const trusted = wasDirty || (wasClean && (await this.#ensureVerified(index)));
    // Whether the block's file range holds zeros but for what this write puts there.
    let onZeros = false;
    if (!trusted && !whole) {
      this.#pins.cancelDrop(index);
      await this.#fillBuffers.lend(async (buf) => {
        const base = await this.#inner.read(index, { into: buf });
        if (base === null) {
          this.#files.punch(index);
          onZeros = true;
        } else {
          await this.#localWrite(index, 0, base);
        }
      });
    }
    let record: Buffer;
    if ((data === null || isZero(data)) && whole) {
      this.#files.punch(index);
      record = ZERO_RECORD;
    } else {
      const piece = data ?? Buffer.alloc(length);
      if (wasZero && !whole) {
        this.#files.punch(index); // make sure the rest reads as zeros
        onZeros = true;
      }
      await this.#localWrite(index, at, piece);
      // Over zeros, the untouched segments' sums are known: ZFS's first 128 KiB piece of a
      // new block no longer reads the whole block back (docs/PERFORMANCE.md, session 12).
      const previous = onZeros ? zeroDirtyRecord(this.blockSize) : wasDirty && !wasZero ? this.#db.local.get(index) : undefined;
      // The segments' bytes are read into a pooled buffer: the first write to a clean block
      // reads the whole block, and a fresh 1 MiB buffer cost ~6 ms of page faults per label
      // write (traced), more than the rest of the write.
      record = await this.#fillBuffers.lend((buf) =>
        recordAfterWrite(this.blockSize, previous, at, piece, (from, length) => this.#files.readInto(index, from, buf.subarray(0, length))),
      );
    }
    const seq = this.#wb.nextSeq();
    await this.#journal(index, record, seq);
    if (record[0] === ZEROS) this.#zeroDirty.add(index);
    else this.#zeroDirty.delete(index);
    this.#verified.add(index);
    this.#wb.written(index, seq, this.#cover.written(index, at, length));
    this.#grants.grant(index); // held again (dirty) from here
  }

  /** Commits a write's record and its journal entry together (on a full disk, after making room). */
  #journal(index: number, record: Buffer, seq: number): Promise<void> {
    const commit = async (): Promise<void> => {
      await this.#db.batch(() => {
        this.#db.local.putInBatch(index, record);
        this.#db.dirty.putInBatch(index, seq);
      });
    };
    // On a full disk a commit fails with whatever LMDB reports: every failure gets the retries.
    return this.#room.retry(index, commit, () => true);
  }

  /** Writes bytes of a block to its file (on a full disk, after making room). */
  #localWrite(index: number, at: number, data: Buffer): Promise<void> {
    return this.#room.retry(index, () => this.#files.write(index, at, data), (err) => isS3zError(err, 'ENOSPACE'));
  }

  // -------------------------------------------------------------------------
  // write-back hooks

  async #upload(index: number): Promise<Buffer | null> {
    return this.#uploadBuffers.lend(async (buf) => {
      // A consistent snapshot: no write of this block runs while we read it.
      const data = await this.#locks.run(index, () => (this.#zeroDirty.has(index) ? null : this.#files.readInto(index, 0, buf)));
      // Nothing goes up before the journal entry of what goes up is on disk: a restart of
      // the machine that undid it could otherwise serve, or upload again, older bytes than
      // S3 then holds. (Free where the folder commits without syncs: a restart drops it.)
      await this.#db.durable();
      // The stores below only borrow `data` until their write settles (types.ts).
      await this.#inner.write(index, data);
      if (data !== null) this.#writeOut(index);
      // Hashed below for the PUT (memoized per buffer object): no new hash.
      return data === null ? null : await sha256Of(data);
    });
  }

  /**
   * The block is in S3, so its local pages are only a cache now: the disk may take them
   * while the writer works, rather than all at once at the next sync() of anyone
   * (zfs-fuse's in `zpool export`: 0.4 s less there, docs/PERFORMANCE.md, session 10).
   */
  #writeOut(index: number): void {
    try {
      this.#files.writeOut(index);
      this.#stats.writeOuts++;
    } catch (err) {
      // A head start for the kernel's own write-back, which nothing waits for.
      this.#log.debug({ block: index, err: (err as Error).message }, 'could not start writing out an uploaded block');
    }
  }

  async #clean(index: number, seq: number, sent: Buffer | null): Promise<void> {
    await this.#locks.run(index, async () => {
      if (this.#wb.seqOf(index) !== seq) return;
      const record = sent === null ? undefined : cleanRecord(sent);
      await this.#db.transaction(() => {
        if (this.#db.dirty.get(index) !== seq) return;
        this.#db.dirty.removeSync(index);
        if (record === undefined) this.#db.local.removeSync(index);
        else this.#db.local.putSync(index, record);
      });
      this.#wb.forget(index);
      this.#zeroDirty.delete(index);
      this.#cover.forget(index);
      if (record !== undefined) this.#lru.set(index, true);
    });
  }

  /** Makes a block local if it is not (hydration): costs nothing for a block already here. */
  async hydrate(index: number, opts?: ReadOptions): Promise<void> {
    checkIndex(this, index, this.#closed);
    if (this.holds(index)) return;
    this.#pins.pin(index);
    try {
      await this.#local(index, opts);
    } finally {
      this.#doneReading(index);
    }
  }

  // -------------------------------------------------------------------------
  // eviction and dropping

  #evict(index: number): void {
    this.#stats.evictions++;
    this.#drop(index);
  }

  /** Drops the `count` least recently used clean blocks, to free local disk. */
  #shed(count: number): void {
    const victims: number[] = [];
    for (const index of this.#lru.rkeys()) {
      if (victims.length >= count) break;
      victims.push(index);
    }
    for (const index of victims) {
      this.#lru.delete(index);
      this.#evict(index);
    }
  }

  /** Forgets a clean block locally, its record and its bytes; after its readers, if it has any. */
  #drop(index: number): void {
    this.#grants.revoke(index);
    if (!this.#pins.deferDrop(index)) this.#punchOut(index);
  }

  #punchOut(index: number): void {
    this.#grants.revoke(index);
    this.#verified.delete(index);
    try {
      this.#files.punch(index);
    } catch (err) {
      this.#log.warn({ block: index, err: (err as Error).message }, 'could not free a cached block');
    }
    this.#db.local.remove(index).catch((err: unknown) => this.#localFailed('evict', index, err));
  }

  #localFailed(what: string, index: number, err: unknown): void {
    this.#stats.localErrors++;
    this.#log.warn({ block: index, what, err: (err as Error).message }, 'local cache update failed');
    if (!this.#wb.has(index)) this.#lru.delete(index);
  }
}
