// Zero map layer: knows which blocks have an object in S3, so a read of an absent
// block is answered with null without a request. Sits directly above the S3 store.
//
// States: unloaded (every call but close() refused) -> loaded (from the LIST of the
// volume, or from the LMDB copy a clean close left behind) -> closed. A load in the
// background (a mount) is loaded once the LIST's first page is in, and lists the rest
// while it serves: blocks below the frontier (past the last index listed) are known;
// a block at or past it that no write of this session touched is unknown, and a read
// of it asks S3 (no object: zeros). The pages that arrive later leave touched blocks
// alone: the write is newer than whatever the LIST saw.
// Invariants:
// - A clear bit means "no object": the bit is cleared before the DELETE is sent (so a
//   read racing the delete gives zeros, the newest content), and set again if the
//   delete fails, unless a newer write of the block has started since.
// - A set bit means "an object": set before the PUT and never cleared when the PUT
//   fails. A read of a set bit that finds no object is EMISSING (EIO), never zeros:
//   the object was deleted behind the mount's back. The one exception is a block
//   whose last write failed (kept in a small set until a write of it succeeds): S3 may
//   or may not hold it, so a GET that finds nothing answers null. A wrong clear bit
//   would hide data, so every uncertain case ends with the bit set.
// - The map's memory is bounded by SparseBitmap (sparse-bitmap.ts): by the chunks
//   holding a stored block, never by the device.
// - The LMDB copy (`zmap` table) is trusted only if meta.zmap says the session that
//   wrote it closed cleanly with the token the caller expects, and only a map whose
//   LIST was complete is closed clean. Loading marks it
//   unclean (committed before load() resolves); only close() marks it clean, after
//   every chunk is written, so a crash always leads to a rebuild from LIST.
// - Writes of one block are assumed to arrive one at a time (the guard layer above
//   serializes them); with overlapping writes S3's own outcome is undefined anyway.
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { isZero } from './checksum.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHUNK_BITS, SparseBitmap, chunkOf } from './sparse-bitmap.js';

export { CHUNK_BITS } from './sparse-bitmap.js';

const META_KEY = 'zmap';

export interface ZeroMapConfig {
  /** Changed chunks are written to LMDB at most this long after they change (and on flush/close). */
  readonly persistDelayMs?: number;
}

export const DEFAULT_ZERO_MAP_CONFIG = { persistDelayMs: 2000 } as const satisfies Required<ZeroMapConfig>;

export interface ZeroMapSource {
  /**
   * The token the persisted map must carry to be reused (e.g. the lease token of the
   * last clean read-write session); undefined: never reuse it, always LIST.
   */
  readonly token: string | undefined;
  /**
   * Pages of stored block indices in ascending order (the volume's LIST), from the
   * first block past `after` when given; called only when the map is rebuilt.
   */
  readonly list: (after?: number) => AsyncIterable<readonly number[]>;
}

export interface ZeroMapLoadOptions {
  /**
   * Resolve once the LIST's first page is in and list the rest while serving (a
   * mount of a big volume is usable at once), retrying a failed page until close().
   */
  readonly background?: boolean;
}

/** The wait before listing again after a failed LIST page in the background: 1 s, doubling, at most this. */
const RELIST_MAX_MS = 30_000;

export interface ZeroMapStats {
  /** Blocks whose bit is set (objects believed to exist). */
  readonly stored: number;
  /** Reads answered with null without asking the store below. */
  zeroReads: number;
  /** Reads of a block listed as stored that S3 had no object for (answered EIO). */
  missing: number;
  /** Where the map came from at load. */
  loadedFrom: 'none' | 'list' | 'cache';
  /** LIST pages read to build the map. */
  listPages: number;
  /** True while the rest of the LIST is read in the background. */
  listing: boolean;
  /** Reads of blocks not listed yet, asked of S3 since the map could not answer them. */
  unlistedReads: number;
  /** Bitmap chunks held in memory (4 KiB each). */
  readonly chunks: number;
}

interface ZeroMapMeta {
  readonly clean: boolean;
  readonly token: string | null;
  readonly blockCount: number;
  readonly chunkBits: number;
}

export class ZeroMapStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  /** `stored` and `chunks` are read from the bitmap, never kept apart from it. */
  readonly stats: ZeroMapStats;
  #inner: BlockStore;
  #db: LocalDb;
  #log: Logger;
  #persistDelayMs: number;
  #bits: SparseBitmap;
  /** Chunks changed since they were last written to LMDB (empty in #bits: to be removed). */
  #dirty = new Set<number>();
  #timer: NodeJS.Timeout | undefined;
  /** Latest write generation per block with a write in flight; lets a failed delete know whether it is still the newest. */
  #writing = new Map<number, number>();
  #generation = 0;
  /** Blocks whose last write failed: S3 may or may not hold an object (kept until a write succeeds). */
  #uncertain = new Set<number>();
  #token: string | undefined;
  #loaded = false;
  #loading = false;
  #closed = false;
  /** While listing in the background: every stored block below this index is in the map. */
  #frontier = 0;
  /** While listing in the background: blocks at or past the frontier written in this session. */
  #touched = new Set<number>();
  #stopListing = new AbortController();
  #listed: Promise<void> = Promise.resolve();
  #doneListing: () => void = () => {};

  constructor(config: ZeroMapConfig, inner: BlockStore, deps: { db: LocalDb; log: Logger; now?: () => number }) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    const bits = (this.#bits = new SparseBitmap(inner.blockCount));
    this.stats = {
      get stored() {
        return bits.count;
      },
      get chunks() {
        return bits.chunks;
      },
      zeroReads: 0, missing: 0, loadedFrom: 'none', listPages: 0, listing: false, unlistedReads: 0,
    };
    this.#db = deps.db;
    this.#log = deps.log.child({ layer: 'zero-map' });
    this.#persistDelayMs = config.persistDelayMs ?? DEFAULT_ZERO_MAP_CONFIG.persistDelayMs;
  }

  /**
   * Fills the map, from LMDB if a clean close left it there with `source.token`,
   * else from `source.list()`; then marks the LMDB copy unclean. Must resolve before
   * any read or write.
   */
  async load(source: ZeroMapSource, opts: ZeroMapLoadOptions = {}): Promise<void> {
    checkOpen(this.#closed);
    if (this.#loaded || this.#loading) throw new Error('ZeroMapStore.load() called twice');
    this.#loading = true;
    this.#token = source.token;
    const meta = this.#db.meta.get(META_KEY) as ZeroMapMeta | undefined;
    const reusable =
      source.token !== undefined &&
      meta?.clean === true &&
      meta.token === source.token &&
      meta.blockCount === this.blockCount &&
      meta.chunkBits === CHUNK_BITS;
    try {
      // Unclean before anything else: from here on the LMDB copy may differ from S3
      // until close() says otherwise.
      await this.#db.meta.put(META_KEY, this.#meta(false, null));
      if (reusable && this.#restore()) {
        this.stats.loadedFrom = 'cache';
      } else {
        await this.#rebuild(source.list, opts.background === true);
        this.stats.loadedFrom = 'list';
      }
    } catch (err) {
      // Left unloaded (and the LMDB copy unclean): the caller may try again.
      this.#reset();
      this.#loading = false;
      throw err;
    }
    this.#loading = false;
    this.#loaded = true;
    if (!this.stats.listing) this.#log.info({ from: this.stats.loadedFrom, stored: this.stats.stored, pages: this.stats.listPages }, 'zero map loaded');
  }

  /** Resolves once the map is complete (the background LIST done), or closed. */
  get listed(): Promise<void> {
    return this.#listed;
  }

  /** The token a clean close records (defaults to the one given to load()). */
  setToken(token: string | undefined): void {
    this.#token = token;
  }

  /** True when block `index` may have an object below (its bit is set). */
  has(index: number): boolean {
    return this.#bits.has(index);
  }

  /**
   * The indices of set bits in ascending order. Chunks are visited in the order they
   * had when iteration began; bits are read live, so a block written meanwhile may or
   * may not be reported.
   */
  async *storedIndices(): AsyncGenerator<number> {
    for (const index of this.#bits.indices()) yield index;
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    this.#check(index);
    if (!this.has(index)) {
      if (this.#unknown(index)) {
        // Not listed yet: only S3 can say; no object there is a hole, as a listing would have said.
        this.stats.unlistedReads++;
        return this.#inner.read(index, opts);
      }
      this.stats.zeroReads++;
      return null;
    }
    const data = await this.#inner.read(index, opts);
    // A set bit with no object: zeros would be wrong bytes for ZFS, unless the block was
    // deleted since this read began (bit now clear) or its last write failed midway.
    if (data === null && this.has(index) && !this.#uncertain.has(index)) {
      this.stats.missing++;
      this.#log.error({ block: index }, 'block listed as stored has no object in S3 (deleted behind the mount?)');
      throw new S3zError('EMISSING', `block ${index}: the volume lists it as stored but S3 has no object for it (deleted by a lifecycle rule or another tool?)`);
    }
    return data;
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    this.#check(index);
    checkBlock(this, index, data);
    const generation = ++this.#generation;
    this.#writing.set(index, generation);
    if (this.stats.listing && index >= this.#frontier) this.#touched.add(index);
    const zero = data === null || isZero(data);
    // Before the call below, not after: see the invariants at the top.
    this.#set(index, !zero);
    try {
      await this.#inner.write(index, zero ? null : data);
      if (this.#writing.get(index) === generation) this.#uncertain.delete(index);
    } catch (err) {
      // Whether the object is there now is unknown: a GET that finds none is not an error.
      this.#uncertain.add(index);
      // The delete may not have happened: the object may still be there. A failed PUT
      // leaves its bit set already (the object may or may not have been replaced).
      if (zero && this.#writing.get(index) === generation) this.#set(index, true);
      throw err;
    } finally {
      if (this.#writing.get(index) === generation) this.#writing.delete(index);
    }
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#persist();
    await this.#inner.flush();
  }

  /** Closes the store below, then writes the map and marks it clean with the current token. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopListing.abort();
    this.#cancelTimer();
    // If the store below fails to close, some write may not have reached S3: leave
    // the LMDB copy unclean so the next mount lists again.
    await this.#inner.close();
    if (!this.#loaded) return;
    await this.#persist();
    // A map whose LIST did not finish would hide blocks from the next mount.
    if (this.stats.listing) return;
    await this.#db.meta.put(META_KEY, this.#meta(true, this.#token ?? null));
    this.#log.debug({ stored: this.stats.stored, token: this.#token }, 'zero map saved');
  }

  #check(index: number): void {
    checkIndex(this, index, this.#closed);
    if (!this.#loaded) throw new Error('ZeroMapStore used before load() resolved');
  }

  #meta(clean: boolean, token: string | null): ZeroMapMeta {
    return { clean, token, blockCount: this.blockCount, chunkBits: CHUNK_BITS };
  }

  /** Sets or clears one bit and schedules a save of its chunk. */
  #set(index: number, on: boolean): void {
    if (!this.#bits.set(index, on)) return;
    this.#dirty.add(chunkOf(index));
    this.#schedule();
  }

  /** Fills the map from the LMDB copy; false (map left empty) if the copy looks wrong. */
  #restore(): boolean {
    for (const { key, value } of this.#db.zmap.getRange()) {
      if (!this.#bits.load(key, value)) {
        this.#log.warn({ chunk: key }, 'zero map copy in the cache is malformed; listing the volume instead');
        this.#reset();
        return false;
      }
    }
    return true;
  }

  #reset(): void {
    this.#bits.clear();
    this.#dirty.clear();
    this.#cancelTimer();
    this.stats.listPages = 0;
  }

  async #rebuild(list: ZeroMapSource['list'], background: boolean): Promise<void> {
    // The old copy may hold bits the volume no longer has.
    await this.#db.zmap.clearAsync();
    const pages = list()[Symbol.asyncIterator]();
    if (!background) {
      for (let r = await pages.next(); r.done !== true; r = await pages.next()) this.#apply(r.value);
      await this.#persist();
      return;
    }
    const first = await pages.next();
    if (first.done === true) {
      await this.#persist();
      return;
    }
    this.stats.listing = true;
    this.#listed = new Promise((resolve) => (this.#doneListing = resolve));
    this.#apply(first.value);
    void this.#listRest(pages, list);
  }

  /** Sets the bits of one LIST page (ascending indices) and moves the frontier past it. */
  #apply(page: readonly number[]): void {
    this.stats.listPages++;
    let ignored = 0;
    let last = -1;
    for (const index of page) {
      if (!Number.isInteger(index) || index < 0 || index >= this.blockCount) ignored++;
      else {
        // A block written in this session since the LIST began: the write's bit is newer.
        if (!this.#touched.has(index)) this.#set(index, true);
        last = Math.max(last, index);
      }
    }
    if (ignored > 0) this.#log.warn({ ignored }, 'the listing named blocks outside the device; ignored');
    if (last >= this.#frontier) {
      this.#frontier = last + 1;
      for (const index of this.#touched) if (index < this.#frontier) this.#touched.delete(index);
    }
  }

  /** The background LIST past its first page; a failed page is listed again, after the last block applied. */
  async #listRest(pages: AsyncIterator<readonly number[]>, list: ZeroMapSource['list']): Promise<void> {
    const signal = this.#stopListing.signal;
    let failures = 0;
    for (;;) {
      try {
        for (let r = await pages.next(); r.done !== true; r = await pages.next()) {
          if (signal.aborted) break;
          this.#apply(r.value);
          failures = 0;
        }
        break;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        const waitMs = Math.min(RELIST_MAX_MS, 1000 * 2 ** (failures - 1));
        this.#log.warn({ err: (err as Error).message, blocksListed: this.#frontier, retryInMs: waitMs }, 'listing the volume failed; reads of blocks not listed yet ask S3 meanwhile');
        try {
          await sleep(waitMs, undefined, { signal });
        } catch {
          break;
        }
        pages = list(this.#frontier > 0 ? this.#frontier - 1 : undefined)[Symbol.asyncIterator]();
      }
    }
    if (signal.aborted) {
      this.#doneListing();
      return;
    }
    this.stats.listing = false;
    this.#touched.clear();
    this.#frontier = this.blockCount;
    this.#log.info({ from: 'list', stored: this.stats.stored, pages: this.stats.listPages }, 'zero map loaded');
    // In the same turn as `listing` going false: whoever waits (hydration's total) is
    // up to date before anyone can read the stats again.
    this.#doneListing();
    await this.#persist().catch((err: unknown) => this.#log.warn({ err }, 'saving the zero map failed; will try again'));
  }

  /** True for a block the background LIST has not reached and no write of this session touched. */
  #unknown(index: number): boolean {
    return this.stats.listing && index >= this.#frontier && !this.#touched.has(index);
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#persist().catch((err: unknown) => this.#log.warn({ err }, 'saving the zero map failed; will try again'));
    }, this.#persistDelayMs);
    this.#timer.unref();
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Writes every changed chunk to LMDB and waits for the commit. */
  async #persist(): Promise<void> {
    this.#cancelTimer();
    if (this.#dirty.size === 0) return;
    const keys = [...this.#dirty];
    this.#dirty.clear();
    try {
      const writes = keys.map((key) => {
        const value = this.#bits.stored(key);
        return value !== undefined ? this.#db.zmap.put(key, value) : this.#db.zmap.remove(key);
      });
      await Promise.all(writes);
    } catch (err) {
      // Kept for the next change, flush or close to try again (no timer of its own:
      // a database that is gone would make it a loop).
      for (const key of keys) this.#dirty.add(key);
      throw err;
    }
  }
}
