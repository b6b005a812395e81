// The cache layer: a persistent block cache in LMDB and the write-back journal.
//
// Block states (per index):
//   absent   nothing local; a read misses and asks the store below
//   clean    LMDB `blocks` holds the same content as S3; listed in the eviction LRU
//   dirty    LMDB `blocks` holds newer content than S3 and `dirty` holds its write
//            sequence number; never evicted; queued for upload
//   uploading  dirty, with one upload in flight (never two for one block)
// Entries are CRC-32 (4 bytes) + data, or the 4-byte ZERO marker for a block
// written as zeros; every entry is checked against its checksum when loaded.
//
// Invariants
//   - a write resolves only once its data and its journal entry are committed to
//     LMDB together, so a crash of the process loses no acknowledged write;
//   - on start, a journal left by a crash is replayed to S3 before the first read;
//   - flush() resolves once every write that resolved before it is in S3;
//   - dirty data is bounded (backpressure) and clean data is bounded by the cache
//     size (LRU eviction); memory holds only indices and a small hot set.
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { crc32 } from 'node:zlib';
import { isZero } from './checksum.js';

export interface CacheConfig {
  /** Clean blocks beyond this many bytes are evicted, least recently used first. */
  readonly maxBytes: number;
  /** Read-only and overlay mounts: writes are refused here and nothing is uploaded. */
  readonly readOnly: boolean;
  /** Uploads in flight at once; kept below the S3 socket pool so reads always find a socket. */
  readonly uploadConcurrency: number;
  /** Writes wait while this much data is dirty. */
  readonly maxDirtyBytes: number;
  /** Decoded blocks kept in memory for repeated hits. */
  readonly hotBytes: number;
  /**
   * A dirty block waits this long before its upload starts, unless a flush or dirty-data
   * pressure asks for it: ZFS writes a 1 MiB block as several 128 KiB pieces, and each
   * piece would otherwise cost a PUT of the whole block.
   */
  readonly writeDelayMs: number;
}

export const DEFAULT_CACHE_CONFIG: Omit<CacheConfig, 'readOnly'> = {
  maxBytes: 10 * 1024 ** 3,
  uploadConcurrency: 16,
  maxDirtyBytes: 128 * 1024 ** 2,
  hotBytes: 32 * 1024 ** 2,
  writeDelayMs: 1000,
};

export interface CacheStats {
  hit: number;
  miss: number;
  blocks: number;
  bytes: number;
  dirtyBlocks: number;
  inflight: number;
  uploads: number;
  uploadErrors: number;
  evictions: number;
  corrupt: number;
  replayed: number;
  /** Local puts and removes that failed (a full cache disk). */
  localErrors: number;
}

// Local entries carry a CRC-32 (5 GB/s here, against 1.6 for SHA-256): it is checked at
// every load from LMDB, so a warm read costs a copy and a CRC, and it catches bit rot as well.
const HEADER = 4;
const ZERO_MARKER = Buffer.alloc(HEADER);

function encode(data: Buffer): Buffer {
  const entry = Buffer.allocUnsafe(HEADER + data.length);
  entry.writeUInt32BE(crc32(data), 0);
  data.copy(entry, HEADER);
  return entry;
}

/** The block in an entry, null for the zero marker, undefined when it fails its check. */
function decode(entry: Buffer, blockSize: number): Buffer | null | undefined {
  if (entry.length === HEADER && entry.equals(ZERO_MARKER)) return null;
  const data = entry.subarray(HEADER);
  return data.length === blockSize && crc32(data) === entry.readUInt32BE(0) ? data : undefined;
}

/** Local write attempts before a writer gets ENOSPC. */
const LOCAL_RETRIES = 4;

/** lmdb-js hangs a rejected `commitError` promise on a failed commit: handled here, or it would end the process. */
function quiet(err: unknown): void {
  (err as { commitError?: Promise<unknown> } | undefined)?.commitError?.catch(() => {});
}

interface FlushWaiter {
  readonly seq: number;
  resolve(): void;
  reject(err: unknown): void;
}

export class CacheStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  #inner: BlockStore;
  #db: LocalDb;
  #config: CacheConfig;
  #log: Logger;
  #closed = false;
  #started = false;
  /** Clean entries present in LMDB, in LRU order; eviction removes them from LMDB. */
  #lru: LRUCache<number, true>;
  #hot: LRUCache<number, Buffer>;
  /** Dirty blocks and the sequence number of their latest write. */
  #dirty = new Map<number, number>();
  /** Dirty blocks waiting for an upload, with the time it may start (insertion order ≈ due order). */
  #queue = new Map<number, number>();
  #delayTimer: NodeJS.Timeout | undefined;
  #uploading = new Set<number>();
  #reads = new Map<number, Promise<Buffer | null>>();
  /** Blocks written while a miss of theirs was in flight: that miss must not fill the cache. */
  #overtaken = new Set<number>();
  #seq = 0;
  #flushWaiters: FlushWaiter[] = [];
  #spaceWaiters: Array<() => void> = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #stats: Omit<CacheStats, 'blocks' | 'bytes' | 'dirtyBlocks' | 'inflight'> = {
    hit: 0, miss: 0, uploads: 0, uploadErrors: 0, evictions: 0, corrupt: 0, replayed: 0, localErrors: 0,
  };

  constructor(config: CacheConfig, inner: BlockStore, deps: { db: LocalDb; log: Logger }) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#db = deps.db;
    this.#config = config;
    this.#log = deps.log.child({ layer: 'cache' });
    this.#lru = new LRUCache<number, true>({
      max: Math.max(1, Math.floor(config.maxBytes / this.blockSize)),
      dispose: (_v, index, reason) => {
        if (reason !== 'evict') return;
        this.#stats.evictions++;
        this.#hot.delete(index);
        this.#db.blocks.remove(index).catch((err: unknown) => this.#localFailed('evict', index, err));
      },
    });
    this.#hot = new LRUCache<number, Buffer>({ maxSize: Math.max(this.blockSize, config.hotBytes), sizeCalculation: (b) => b.length });
  }

  get stats(): CacheStats {
    return {
      ...this.#stats,
      blocks: this.#lru.size + this.#dirty.size,
      bytes: (this.#lru.size + this.#dirty.size) * this.blockSize,
      dirtyBlocks: this.#dirty.size,
      inflight: this.#uploading.size,
    };
  }

  /** True when the block is held locally (clean, dirty or hot): reading it costs no request. */
  holds(index: number): boolean {
    return this.#hot.has(index) || this.#lru.has(index) || this.#dirty.has(index);
  }

  /**
   * Loads the journal and the cached indices, then replays the journal to S3.
   * Must complete before the device serves anything.
   */
  async start(): Promise<void> {
    for (const { key, value } of this.#db.dirty.getRange()) {
      this.#dirty.set(key, value);
      this.#seq = Math.max(this.#seq, value);
    }
    for (const key of this.#db.blocks.getKeys()) {
      if (!this.#dirty.has(key)) this.#lru.set(key, true);
    }
    this.#started = true;
    if (this.#dirty.size === 0) return;
    if (this.#config.readOnly) {
      throw new S3zError('EMOUNT', `the cache holds ${this.#dirty.size} blocks not yet in S3, left by a read-write mount that did not finish; mount read-write once to upload them`);
    }
    this.#log.warn({ blocks: this.#dirty.size }, 'replaying the write-back journal to S3');
    this.#stats.replayed = this.#dirty.size;
    for (const index of this.#dirty.keys()) this.#queue.set(index, 0);
    this.#pump();
    await this.flush();
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    const hot = this.#hot.get(index);
    if (hot !== undefined) {
      this.#stats.hit++;
      this.#lru.get(index);
      return hot;
    }
    const local = this.#load(index);
    if (local !== undefined) {
      this.#stats.hit++;
      return local;
    }
    this.#stats.miss++;
    let pending = this.#reads.get(index);
    if (pending === undefined) {
      pending = this.#fill(index, opts).finally(() => this.#reads.delete(index));
      this.#reads.set(index, pending);
    }
    return pending;
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    checkIndex(this, index, this.#closed);
    checkBlock(this, index, data);
    if (this.#config.readOnly) throw new S3zError('EROFS', `block ${index}: the device is read-only`);
    while (this.#dirty.size * this.blockSize >= this.#config.maxDirtyBytes && !this.#dirty.has(index)) {
      await new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
      checkOpen(this.#closed);
    }
    const zero = data === null || isZero(data);
    const entry = zero ? ZERO_MARKER : encode(data);
    const seq = ++this.#seq;
    if (this.#reads.has(index)) this.#overtaken.add(index);
    this.#hot.delete(index);
    this.#lru.delete(index);
    await this.#journal(index, entry, seq);
    // Only now: an upload that reads this seq must find this data (or newer) in LMDB. A flush
    // waits for writes that resolved before it, and this one resolves after this line.
    if ((this.#dirty.get(index) ?? 0) < seq) this.#dirty.set(index, seq);
    // A read racing this write (hydration, read-ahead) may have put the old copy back in the hot set.
    if (zero) this.#hot.delete(index);
    else if (this.#dirty.get(index) === seq) this.#hot.set(index, data);
    // A block already waiting keeps its place and time: rewrites coalesce into one upload.
    if (!this.#queue.has(index)) this.#queue.set(index, Date.now() + this.#config.writeDelayMs);
    this.#pump();
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    // Every write that resolved has its seq in #dirty (until uploaded), and each is <= #seq.
    const seq = this.#seq;
    if (this.#oldestDirty() <= seq) {
      const done = new Promise<void>((resolve, reject) => this.#flushWaiters.push({ seq, resolve, reject }));
      this.#pump(); // a waiting flush makes every queued block due now
      await done;
    }
    await this.#inner.flush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#started) await this.flush();
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#delayTimer);
    for (const wake of this.#spaceWaiters.splice(0)) wake();
    await this.#inner.close();
  }

  /**
   * Commits a write and its journal entry together. The local disk may be full (a smaller
   * disk than --cache-size, or filled by something else since the mount): clean blocks
   * are dropped and uploads given time to free dirty ones before the writer hears ENOSPC.
   */
  async #journal(index: number, entry: Buffer, seq: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#db.transaction(() => {
          this.#db.blocks.putSync(index, entry);
          this.#db.dirty.putSync(index, seq);
        });
        return;
      } catch (err) {
        quiet(err);
        this.#stats.localErrors++;
        if (attempt > LOCAL_RETRIES || this.#closed) {
          this.#log.error({ block: index, err: (err as Error).message }, 'the local cache refused a write');
          throw new S3zError('ENOSPACE', `block ${index}: the local cache disk (${this.#db.dir}) has no room left for it`, { cause: err });
        }
        this.#log.warn({ block: index, attempt, err: (err as Error).message }, 'local write failed; making room in the cache');
        this.#shed(Math.max(4, Math.ceil(this.#lru.size / 8)));
        this.#pump();
        await this.#db.committed().catch(quiet);
        await new Promise((r) => setTimeout(r, 250 * attempt));
      }
    }
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
      this.#hot.delete(index);
      this.#stats.evictions++;
      this.#db.blocks.remove(index).catch((err: unknown) => this.#localFailed('shed', index, err));
    }
  }

  /** A local put or remove of a clean block failed: that block is no longer trusted to be local. */
  #localFailed(what: string, index: number, err: unknown): void {
    quiet(err);
    this.#stats.localErrors++;
    this.#log.warn({ block: index, what, err: (err as Error).message }, 'local cache update failed');
    if (!this.#dirty.has(index)) this.#lru.delete(index);
  }

  /** The cached content of a block (null for a cached zero block), or undefined if not cached or bad. */
  #load(index: number): Buffer | null | undefined {
    const entry = this.#db.blocks.get(index);
    if (entry === undefined) return undefined;
    const data = decode(entry, this.blockSize);
    if (data === null) return null;
    if (data !== undefined) {
      this.#lru.get(index);
      this.#hot.set(index, data);
      return data;
    }
    this.#stats.corrupt++;
    if (this.#dirty.has(index)) {
      // The only copy of data not yet uploaded: nothing to fall back on, and no wrong bytes go up.
      throw new S3zError('ECORRUPT', `block ${index}: the local copy of a block not yet uploaded fails its checksum`);
    }
    this.#log.warn({ block: index }, 'cached block failed its checksum; fetching it again');
    this.#lru.delete(index);
    this.#db.blocks.remove(index).catch((err: unknown) => this.#localFailed('drop', index, err));
    return undefined;
  }

  async #fill(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    let data: Buffer | null;
    try {
      data = await this.#inner.read(index, opts);
    } catch (err) {
      // A write landed while we fetched: what S3 said no longer matters.
      if (!this.#overtaken.delete(index) && !this.#dirty.has(index)) throw err;
      const local = this.#load(index);
      if (local === undefined) throw err;
      return local;
    }
    if (this.#overtaken.delete(index) || this.#dirty.has(index)) {
      // A write landed while we fetched: the local copy is newer than what S3 gave us.
      const local = this.#load(index);
      return local === undefined ? data : local;
    }
    if (data !== null && !this.#closed) {
      this.#db.blocks.put(index, encode(data)).catch((err: unknown) => this.#localFailed('fill', index, err));
      this.#lru.set(index, true);
      this.#hot.set(index, data);
    }
    return data;
  }

  #pump(): void {
    // Due now: everything when a flush waits, writers are held back, or dirty data is half its bound.
    const urgent =
      this.#flushWaiters.length > 0 || this.#spaceWaiters.length > 0 || this.#dirty.size * this.blockSize * 2 >= this.#config.maxDirtyBytes;
    const now = Date.now();
    for (const [index, due] of this.#queue) {
      if (this.#uploading.size >= this.#config.uploadConcurrency) return;
      if (!urgent && due > now) {
        if (this.#delayTimer === undefined && !this.#closed) {
          this.#delayTimer = setTimeout(() => {
            this.#delayTimer = undefined;
            this.#pump();
          }, due - now);
          // Never the reason a process stays up: a flush or close makes every block due at once.
          this.#delayTimer.unref();
        }
        return;
      }
      // One upload per block: a block rewritten mid-upload is queued again when that upload ends.
      if (this.#uploading.has(index)) continue;
      this.#queue.delete(index);
      this.#uploading.add(index);
      void this.#upload(index);
    }
  }

  async #upload(index: number): Promise<void> {
    const seq = this.#dirty.get(index);
    try {
      if (seq === undefined) return;
      // The block just written is usually still in memory; only a replay or an evicted hot entry reads LMDB.
      let data: Buffer | null | undefined = this.#hot.peek(index);
      if (data === undefined) {
        const entry = this.#db.blocks.get(index);
        if (entry === undefined) throw new S3zError('ECORRUPT', `block ${index}: dirty in the journal but missing from the cache`);
        data = decode(entry, this.blockSize);
        if (data === undefined) throw new S3zError('ECORRUPT', `block ${index}: the journaled copy fails its checksum`);
      }
      await this.#inner.write(index, data);
      this.#stats.uploads++;
      if (this.#dirty.get(index) !== seq) return; // rewritten meanwhile: queued again below
      this.#dirty.delete(index);
      // Conditional inside the write transaction: a newer journal entry must survive.
      await this.#db.transaction(() => {
        if (this.#db.dirty.get(index) === seq) {
          this.#db.dirty.removeSync(index);
          if (data === null) this.#db.blocks.removeSync(index);
        }
      });
      if (data !== null && !this.#dirty.has(index)) this.#lru.set(index, true);
    } catch (err) {
      quiet(err);
      this.#stats.uploadErrors++;
      this.#log.error({ block: index, err: (err as Error).message }, 'upload failed; will retry');
      // fsync must not claim durability it does not have: fail the flushes that wait on this block.
      for (const w of this.#flushWaiters.filter((w) => seq !== undefined && w.seq >= seq)) {
        this.#flushWaiters.splice(this.#flushWaiters.indexOf(w), 1);
        w.reject(err);
      }
      this.#scheduleRetry(index);
    } finally {
      this.#uploading.delete(index);
      if (this.#dirty.has(index) && !this.#closed && this.#retryTimer === undefined && !this.#queue.has(index)) this.#queue.set(index, 0);
      this.#settle();
      this.#pump();
    }
  }

  #scheduleRetry(index: number): void {
    // A closed database means the process is going away: the journal keeps the block.
    if (this.#retryTimer !== undefined || this.#closed || this.#db.closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      for (const i of this.#dirty.keys()) if (!this.#uploading.has(i) && !this.#queue.has(i)) this.#queue.set(i, 0);
      this.#pump();
    }, 2000);
  }

  #oldestDirty(): number {
    let min = Infinity;
    for (const seq of this.#dirty.values()) if (seq < min) min = seq;
    return min;
  }

  #settle(): void {
    const oldest = this.#oldestDirty();
    if (this.#flushWaiters.length > 0) {
      const done = this.#flushWaiters.filter((w) => w.seq < oldest);
      this.#flushWaiters = this.#flushWaiters.filter((w) => w.seq >= oldest);
      for (const w of done) w.resolve();
    }
    while (this.#spaceWaiters.length > 0 && this.#dirty.size * this.blockSize < this.#config.maxDirtyBytes) this.#spaceWaiters.shift()?.();
  }
}
