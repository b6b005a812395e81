// Write-back scheduling for the cache layer: which blocks are dirty, when each is
// uploaded, and who waits for what. It holds no block data: the cache journals a
// write, then reports it here; an upload is the cache's `upload` hook.
//
// State per dirty block: its latest write sequence number, and one of
//   waiting    queued, due at a time (a write delay lets ZFS's 128 KiB pieces of one
//              block coalesce into one PUT; a rewrite starts the delay again, up to
//              MAX_WAIT_DELAYS delays after the first write), or at once when a flush
//              waits or writers are held back at the dirty bound. Nothing goes up
//              early because dirty data is merely large: a block still being written
//              would go up again once its writer is done (twice the bytes of large
//              blocks under a sequential write, a whole-block PUT per rewrite under
//              random writes);
//   uploading  one upload in flight; never two for one block. A block rewritten
//              meanwhile is queued again when that upload ends.
// Invariants:
//   - flush() resolves once every write whose sequence number was given out before
//     the call is uploaded: per dirty block, the first write that no finished upload
//     covers is known (#pendingFrom), and a rewrite never hides an older write still
//     waiting; it rejects if an upload it waits for fails (fsync must fail rather
//     than lie), and failed blocks are retried on a timer; an upload that succeeded
//     but whose `clean` failed fails no flush (S3 holds the write): the block stays
//     dirty and is uploaded again;
//   - writers wait (roomFor) while dirty data is at its bound;
//   - a block leaves the dirty set only after `clean` (the cache's journal update) ran
//     for the very sequence number that was uploaded.
import type { Logger } from '../log.js';

export interface WriteBackConfig {
  readonly uploadConcurrency: number;
  readonly maxDirtyBytes: number;
  readonly writeDelayMs: number;
  readonly blockSize: number;
}

export interface WriteBackHooks {
  /** Uploads the block's current local content; resolves to the SHA-256 of what it sent (null: zeros); throws if it could not. */
  upload(index: number): Promise<Buffer | null>;
  /** The upload of `seq` (whose content had SHA-256 `sent`, null: zeros) succeeded and no newer write came: make the block clean locally. */
  clean(index: number, seq: number, sent: Buffer | null): Promise<void>;
  /** False once the process is going away: the journal keeps failed blocks, no retry timer. */
  canRetry(): boolean;
}

interface FlushWaiter {
  readonly seq: number;
  resolve(): void;
  reject(err: unknown): void;
}

const RETRY_MS = 2000;

/**
 * A block rewritten while it waits waits its delay again, but goes up at most this many
 * delays after the write that made it wait (10 s by default): random 4 KiB writes rewrite
 * a block every few hundred ms, and each upload of it before it settles is a whole-block
 * PUT (fio, 15 s over 1 GiB, no dirty-data pressure: 2831 PUTs and 4.2k IOPS with a fixed
 * delay, 1818 and 6.0k with this).
 */
export const MAX_WAIT_DELAYS = 10;

export class WriteBack {
  readonly stats = { uploads: 0, uploadErrors: 0 };
  #config: WriteBackConfig;
  #hooks: WriteBackHooks;
  #log: Logger;
  #dirty = new Map<number, number>();
  /**
   * Per dirty block, the lowest sequence number a write of it may have that no finished
   * upload covers: its first write since it was clean, then one past what an upload sent.
   */
  #pendingFrom = new Map<number, number>();
  /** Blocks due now: complete ones, replays, retries. */
  #now = new Set<number>();
  /**
   * Blocks waiting out the write delay → when due; insertion order is due order: a block
   * moves to the end only with a due time of now + the delay, the latest any can have.
   */
  #later = new Map<number, number>();
  /** The same blocks → when the write that made them wait came. */
  #waitingSince = new Map<number, number>();
  #uploading = new Set<number>();
  #seq = 0;
  #flushWaiters: FlushWaiter[] = [];
  #spaceWaiters: Array<() => void> = [];
  #delayTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(config: WriteBackConfig, hooks: WriteBackHooks, log: Logger) {
    this.#config = config;
    this.#hooks = hooks;
    this.#log = log;
  }

  get size(): number {
    return this.#dirty.size;
  }

  get inflight(): number {
    return this.#uploading.size;
  }

  has(index: number): boolean {
    return this.#dirty.has(index);
  }

  seqOf(index: number): number | undefined {
    return this.#dirty.get(index);
  }

  indices(): IterableIterator<number> {
    return this.#dirty.keys();
  }

  nextSeq(): number {
    return ++this.#seq;
  }

  /** A journal left by an earlier run: these blocks are dirty with these sequence numbers. */
  restore(index: number, seq: number): void {
    this.#dirty.set(index, seq);
    this.#pendingFrom.set(index, 0); // its earlier writes are not known: all of them
    this.#seq = Math.max(this.#seq, seq);
  }

  /** Drops a block from the dirty set without uploading it (its journal entry is gone). */
  forget(index: number): void {
    this.#dirty.delete(index);
    this.#pendingFrom.delete(index);
    this.#now.delete(index);
    this.#unwait(index);
  }

  /** Resolves when a write of `index` may proceed without passing the dirty bound. */
  async roomFor(index: number, closed: () => void): Promise<void> {
    while (this.#dirty.size * this.#config.blockSize >= this.#config.maxDirtyBytes && !this.#dirty.has(index)) {
      const room = new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
      this.#pump(); // a held-back writer makes every queued block due now
      await room;
      closed();
    }
  }

  /**
   * A write of `index` with sequence `seq` is journaled: queue its upload after the write
   * delay, or at once when `complete` (the whole block was rewritten: no further piece is
   * worth waiting for).
   */
  written(index: number, seq: number, complete = false, now = Date.now()): void {
    if (!this.#pendingFrom.has(index)) this.#pendingFrom.set(index, seq);
    if ((this.#dirty.get(index) ?? 0) < seq) this.#dirty.set(index, seq);
    // A block rewritten while it waits waits again, within its longest wait (rewrites
    // coalesce into one upload); once complete it is due now, ahead of those waiting.
    if (complete) {
      this.#unwait(index);
      this.#now.add(index);
    } else if (!this.#now.has(index)) {
      const due = now + this.#config.writeDelayMs;
      const since = this.#waitingSince.get(index);
      if (since === undefined) {
        this.#later.set(index, due);
        this.#waitingSince.set(index, now);
      } else if (due <= since + MAX_WAIT_DELAYS * this.#config.writeDelayMs) {
        this.#later.delete(index);
        this.#later.set(index, due);
      } // else it keeps its place and time, which is no later than that
    }
    this.#pump();
  }

  /** Queues every dirty block at once (a replay). */
  all(): void {
    for (const index of this.#dirty.keys()) if (!this.#queued(index)) this.#now.add(index);
    this.#pump();
  }

  async flush(): Promise<void> {
    // Every write that resolved has its seq in #dirty (until uploaded), and each is <= #seq.
    const seq = this.#seq;
    if (this.#oldest() > seq) return;
    const done = new Promise<void>((resolve, reject) => this.#flushWaiters.push({ seq, resolve, reject }));
    this.#pump(); // a waiting flush makes every queued block due now
    await done;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#delayTimer);
    for (const wake of this.#spaceWaiters.splice(0)) wake();
  }

  #pump(): void {
    const urgent = this.#flushWaiters.length > 0 || this.#spaceWaiters.length > 0;
    for (const index of this.#now) {
      if (!this.#start(index)) return;
    }
    const now = Date.now();
    for (const [index, due] of this.#later) {
      if (!urgent && due > now) {
        // A rewrite only ever moves a block to a later due time, so the first one waiting
        // is never due sooner than a timer already set.
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
      // Due while its last upload still runs: it stays queued, and that upload's end pumps.
      if (!this.#start(index)) return;
    }
  }

  /** Starts the upload of a due block unless one is running; false once the uploads are at their limit. */
  #start(index: number): boolean {
    if (this.#uploading.size >= this.#config.uploadConcurrency) return false;
    if (this.#uploading.has(index)) return true;
    this.#now.delete(index);
    this.#unwait(index);
    if (this.#dirty.has(index)) {
      this.#uploading.add(index);
      void this.#upload(index);
    }
    return true;
  }

  #unwait(index: number): void {
    this.#later.delete(index);
    this.#waitingSince.delete(index);
  }

  #queued(index: number): boolean {
    return this.#now.has(index) || this.#later.has(index);
  }

  async #upload(index: number): Promise<void> {
    const seq = this.#dirty.get(index);
    let uploaded = false;
    try {
      if (seq === undefined) return;
      // Every write up to `seq` is in the snapshot it sent: the cache journals a write,
      // and reports it here, before the block's lock lets the upload read the block.
      const sent = await this.#hooks.upload(index);
      uploaded = true;
      this.stats.uploads++;
      if ((this.#pendingFrom.get(index) ?? Infinity) <= seq) this.#pendingFrom.set(index, seq + 1);
      if (this.#dirty.get(index) !== seq) return; // rewritten meanwhile: queued again below
      await this.#hooks.clean(index, seq, sent);
      if (this.#dirty.get(index) === seq) this.forget(index);
    } catch (err) {
      this.stats.uploadErrors++;
      if (uploaded && seq !== undefined) {
        // In S3 already; only the cache's record of it failed (a full cache disk): it stays
        // dirty and goes up again, and no flush fails for a write that S3 holds. With no
        // newer write of it, none it may have is below the next number given out.
        this.#log.warn({ block: index, err: (err as Error).message }, 'uploaded, but the cache could not record it; it will be uploaded again');
        if (this.#dirty.get(index) === seq && this.#pendingFrom.get(index) === seq + 1) this.#pendingFrom.set(index, this.#seq + 1);
      } else {
        this.#log.error({ block: index, err: (err as Error).message }, 'upload failed; will retry');
        // Every flush that waits for a write of this block fails (it may be older than `seq`).
        const from = this.#pendingFrom.get(index) ?? seq ?? Infinity;
        for (const w of this.#flushWaiters.filter((w) => w.seq >= from)) {
          this.#flushWaiters.splice(this.#flushWaiters.indexOf(w), 1);
          w.reject(err);
        }
      }
      this.#scheduleRetry();
    } finally {
      this.#uploading.delete(index);
      // Rewritten meanwhile, or failed: again, unless the cache below is going away (an
      // upload that cannot succeed would otherwise be retried in a tight loop).
      if (this.#dirty.has(index) && !this.#closed && this.#retryTimer === undefined && !this.#queued(index) && this.#hooks.canRetry()) this.#now.add(index);
      this.#settle();
      this.#pump();
    }
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed || !this.#hooks.canRetry()) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // The cache below may have gone away meanwhile (a stop told to stop now).
      if (this.#closed || !this.#hooks.canRetry()) return;
      for (const i of this.#dirty.keys()) if (!this.#uploading.has(i) && !this.#queued(i)) this.#now.add(i);
      this.#pump();
    }, RETRY_MS);
  }

  /** The lowest sequence number of a write not yet in the store below (Infinity: none). */
  #oldest(): number {
    let min = Infinity;
    for (const from of this.#pendingFrom.values()) if (from < min) min = from;
    return min;
  }

  #settle(): void {
    const oldest = this.#oldest();
    if (this.#flushWaiters.length > 0) {
      const done = this.#flushWaiters.filter((w) => w.seq < oldest);
      this.#flushWaiters = this.#flushWaiters.filter((w) => w.seq >= oldest);
      for (const w of done) w.resolve();
    }
    while (this.#spaceWaiters.length > 0 && this.#dirty.size * this.#config.blockSize < this.#config.maxDirtyBytes) this.#spaceWaiters.shift()?.();
  }
}
