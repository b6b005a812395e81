// Guard layer: read-after-write guards (DESIGN §2, §3). Some S3-compatible servers
// return an older version of an object for a while after it is overwritten or
// deleted; the S3 store's checksum check cannot tell, because an old version is a
// complete, self-consistent object. This layer remembers, for `windowMs` after each
// write, what the block must now hold (its SHA-256, or absence), and never passes a
// read that disagrees up: it retries with backoff, then fails with ESTALE.
//
// States per block: idle, or writing (a chain of writes, run one at a time).
// Invariants:
// - Two writes of one block are never in flight below at once; a read of a block
//   waits for the writes queued on it when the read began.
// - An expectation is committed to LMDB (`guard` table) before its write is sent
//   below, so it survives a crash or restart of the process for the rest of its
//   window. Its window runs at least `windowMs` past the end of the write: the entry
//   committed first allows a tenth of the window for the upload, and is committed
//   again only after an upload that took longer (one LMDB commit per block fewer).
// - Memory holds one number (the window's end) per block written within the window,
//   in a Map kept in window-end order so that expiry is a walk from the front; the
//   checksums stay in LMDB and are read only when a live expectation exists.
// - A failed write keeps its expectation: S3 may hold either version, the layers
//   above still hold the data and write it again, and until then a read that
//   reaches S3 gets the new content or ESTALE, never possibly-replaced bytes.
import type { Logger } from '../log.js';
import { S3zError, isS3zError } from '../errors.js';
import { withRetry, type RetryPolicy } from '../s3/retry.js';
import type { GuardEntry, LocalDb } from './local-db.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { isZero, sha256Of } from './checksum.js';

export interface GuardConfig {
  /** How long after a write its content is checked on every read. */
  readonly windowMs?: number;
  /** Further attempts after a stale read, with capped exponential backoff. */
  readonly retries?: number;
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** No new attempt starts this long after the first. */
  readonly maxTotalMs?: number;
  /** How often expired expectations are dropped from memory and LMDB. */
  readonly purgeIntervalMs?: number;
}

export const DEFAULT_GUARD_CONFIG = {
  windowMs: 10 * 60_000,
  retries: 8,
  minDelayMs: 100,
  maxDelayMs: 3000,
  maxTotalMs: 30_000,
  purgeIntervalMs: 60_000,
} as const satisfies Required<GuardConfig>;

export interface GuardStats {
  /** Reads (attempts) that returned something other than the expected content. */
  stale: number;
  /** Expectations held (blocks written within the window, until purged). */
  guarded: number;
}

/** The share of the window that a write's first expectation adds for its upload (1/10). */
const UPLOAD_SHARE = 10;

/** A stale read: retried here, and what the caller gets once the retries are spent. */
class StaleRead extends S3zError {}

const settle = (): void => undefined;

export class GuardStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats: GuardStats = { stale: 0, guarded: 0 };
  #inner: BlockStore;
  #db: LocalDb;
  #log: Logger;
  #now: () => number;
  #windowMs: number;
  #retry: RetryPolicy;
  /** Block -> end of its window (ms since epoch), in ascending order of window end. */
  #until = new Map<number, number>();
  /** Block -> the last write queued on it, settled either way (never rejects). */
  #writes = new Map<number, Promise<void>>();
  #timer: NodeJS.Timeout;
  #closed = false;

  constructor(config: GuardConfig, inner: BlockStore, deps: { db: LocalDb; log: Logger; now?: () => number }) {
    const c = { ...DEFAULT_GUARD_CONFIG, ...config };
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#db = deps.db;
    this.#log = deps.log.child({ layer: 'guard' });
    this.#now = deps.now ?? Date.now;
    this.#windowMs = c.windowMs;
    this.#retry = { retries: c.retries, minDelayMs: c.minDelayMs, maxDelayMs: c.maxDelayMs, maxTotalMs: c.maxTotalMs };
    this.#load();
    this.#timer = setInterval(() => {
      try {
        this.purge();
      } catch (err) {
        this.#log.warn({ err }, 'purging expired guards failed');
      }
    }, c.purgeIntervalMs);
    this.#timer.unref();
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    return withRetry(
      this.#retry,
      async () => {
        // Every attempt, not just the first: a stale answer may come from a write
        // that started while the previous attempt was in flight.
        const writing = this.#writes.get(index);
        if (writing !== undefined) await writing;
        let data: Buffer | null;
        try {
          data = await this.#inner.read(index, opts);
        } catch (err) {
          // A block just written that S3 does not show yet is a stale read, not a lost block.
          if (!isS3zError(err, 'EMISSING') || this.#expected(index)?.sum == null) throw err;
          data = null;
        }
        const expected = this.#expected(index);
        if (expected === undefined) return data;
        // Off the main thread, and usually already known: the S3 store verified it.
        const actual = data === null || isZero(data) ? null : (await sha256Of(data)).toString('base64');
        if (actual === expected.sum) return data;
        this.stats.stale++;
        throw new StaleRead(
          'ESTALE',
          `block ${index}: S3 returned ${actual === null ? 'no object' : 'other content'} where ` +
            `${expected.sum === null ? 'none' : 'new content'} was written (stale read)`,
        );
      },
      (err) => err instanceof StaleRead,
      (_err, n) => this.#log.debug({ block: index, attempt: n }, 'stale read; retrying'),
    ).catch((err: unknown) => {
      if (err instanceof StaleRead) this.#log.warn({ block: index }, 'block still stale after retries');
      throw err;
    });
  }

  write(index: number, data: Buffer | null): Promise<void> {
    try {
      checkIndex(this, index, this.#closed);
      checkBlock(this, index, data);
    } catch (err) {
      return Promise.reject(err);
    }
    const previous = this.#writes.get(index) ?? Promise.resolve();
    const run = previous.then(() => this.#write(index, data));
    const tail = run.then(settle, settle);
    this.#writes.set(index, tail);
    // Forget the chain once it is idle, so memory follows the writes in flight.
    void tail.then(() => {
      if (this.#writes.get(index) === tail) this.#writes.delete(index);
    });
    return run;
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#inner.flush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all(this.#writes.values());
    await this.#inner.close();
  }

  /** Drops expectations whose window has passed; returns how many. Runs on a timer too. */
  purge(): number {
    const now = this.#now();
    let dropped = 0;
    for (const [index, until] of this.#until) {
      if (until > now) break; // window-end order: the rest are live
      this.#forget(index);
      dropped++;
    }
    return dropped;
  }

  async #write(index: number, data: Buffer | null): Promise<void> {
    // Memoized: the S3 store below reuses it for the PUT.
    const sum = data === null || isZero(data) ? null : (await sha256Of(data)).toString('base64');
    const until = this.#now() + this.#windowMs + this.#windowMs / UPLOAD_SHARE;
    await this.#remember(index, { sum, until });
    await this.#inner.write(index, data);
    // The stale window follows the upload, however long it took; the earlier entry
    // covers a crash before this one commits.
    if (this.#now() + this.#windowMs <= until) return;
    this.#remember(index, { sum, until: this.#now() + this.#windowMs }).catch((err: unknown) =>
      this.#log.warn({ err, block: index }, 'could not extend a read-after-write guard'),
    );
  }

  /** The live expectation for a block, if any. */
  #expected(index: number): GuardEntry | undefined {
    const until = this.#until.get(index);
    if (until === undefined || until <= this.#now()) return undefined;
    // Committed before the write went below, and reads wait for writes: present.
    const entry = this.#db.guard.get(index);
    if (entry === undefined) this.#log.warn({ block: index }, 'read-after-write guard missing from the cache');
    return entry;
  }

  /**
   * Memory and LMDB change together, in the same order, so a purge's remove can
   * never land after a newer expectation's put.
   */
  #remember(index: number, entry: GuardEntry): Promise<unknown> {
    this.#until.delete(index); // re-inserted at the end: keeps window-end order
    this.#until.set(index, entry.until);
    this.stats.guarded = this.#until.size;
    return this.#db.guard.put(index, entry);
  }

  #forget(index: number): void {
    this.#until.delete(index);
    this.stats.guarded = this.#until.size;
    this.#db.guard.remove(index).catch((err: unknown) => this.#log.warn({ err, block: index }, 'could not drop a guard'));
  }

  /** Takes the live expectations a previous run left in LMDB; drops the expired ones. */
  #load(): void {
    const now = this.#now();
    const live: [number, number][] = [];
    const dead: number[] = [];
    for (const { key, value } of this.#db.guard.getRange()) {
      const ok =
        Number.isInteger(key) &&
        key >= 0 &&
        key < this.blockCount &&
        typeof value === 'object' &&
        value !== null &&
        typeof value.until === 'number' &&
        (value.sum === null || typeof value.sum === 'string');
      if (ok && value.until > now) live.push([key, value.until]);
      else dead.push(key);
    }
    live.sort((a, b) => a[1] - b[1]);
    for (const [index, until] of live) this.#until.set(index, until);
    this.stats.guarded = this.#until.size;
    for (const index of dead) {
      this.#db.guard.remove(index).catch((err: unknown) => this.#log.warn({ err, block: index }, 'could not drop a guard'));
    }
    if (live.length > 0) this.#log.debug({ live: live.length, dropped: dead.length }, 'read-after-write guards restored');
  }
}
