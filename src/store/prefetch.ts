// The prefetch layer, below the cache: detects sequential reads and fetches the
// blocks that follow before they are asked for. Which reads are sequential and how
// far ahead of each to read is read-streams.ts's; this file reads those blocks ahead.
//
// State:
//   streams   the read streams (read-streams.ts), told of each foreground read; they
//             answer the blocks to read ahead, which go to the queue
//   queue     read-ahead indices waiting for a slot (FIFO, so nearest first)
//   inflight  read-ahead requests on their way from the store below
//   held      read-ahead results waiting to be read (oldest dropped first)
//   buffers   what read-ahead requests read their block into (block-buffers.ts): a
//             result is copied into the reader's buffer (ReadOptions.into) and its
//             buffer used again, so a sequential stream allocates no block memory; a
//             reader whose buffer comes from this same pool (the cache's fills: compose
//             shares it) is handed the result's buffer itself, with no copy
//
// Invariants:
//   - foreground reads go to the store below at once; they never wait for a
//     read-ahead slot. A foreground read of a block whose read-ahead is in flight
//     waits for that request instead of sending a second one.
//   - memory is bounded: held + inflight <= maxHeldBytes / blockSize blocks, and the
//     queue holds at most that many indices; nothing grows with the device.
//   - a block written here is never served from a read-ahead copy taken before the
//     write finished: held copies are dropped, in-flight ones marked invalid, and no
//     read-ahead of it starts while the write is in flight.
//   - a read-ahead failure never fails a read: the reader fetches the block itself.
//   - a held copy is handed out once and then forgotten (the cache above keeps it).
//   - a read-ahead's buffer has one owner at a time: the request, then the held entry or
//     the reader that claimed it; whoever drops the result gives the buffer back, unless
//     it was handed out as it is (to a reader without a buffer of its own, for good; to a
//     reader with a buffer of the same pool, who gives it back).
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { BlockBuffers } from './block-buffers.js';
import { copyBlock } from './checksum.js';
import { ReadStreams } from './read-streams.js';

export interface PrefetchConfig {
  /** Read-ahead requests in flight at once. */
  readonly concurrency: number;
  /** Read-ahead window (blocks) when a stream is first seen to be sequential. */
  readonly initialWindow: number;
  /** The window never grows beyond this many bytes ahead of the reader. */
  readonly maxWindowBytes: number;
  /** Read-ahead results held (and in flight) at most; the oldest unread are dropped. */
  readonly maxHeldBytes: number;
  /** Read streams tracked at once. */
  readonly streams: number;
  /** Reads in a row (i, i+1, ...) that make a stream sequential. */
  readonly triggerReads: number;
  /** Read-ahead (blocks) of a sequential stream whose reader keeps several reads in flight; 0: none. */
  readonly parallelWindow: number;
}

export const DEFAULT_PREFETCH_CONFIG: PrefetchConfig = {
  // Measured in session 9 (quick cold sequential read, 512 MiB, alternating): 32 against
  // 16 read 169 / 170 / 178 against 166 / 159 / 156 MB/s at 0 ms, 137 / 156 against
  // 119 / 149 at 20 ms. The window (32 MiB) still bounds what is held.
  concurrency: 32,
  initialWindow: 4,
  maxWindowBytes: 32 * 1024 ** 2,
  maxHeldBytes: 64 * 1024 ** 2,
  streams: 8,
  // s3backer's trigger and first window (2 and 4). Traced on zdb: a pool's import reads
  // the labels, then two blocks in a row at the start of the data, which the files of
  // the first txg follow; 3 started no read-ahead there.
  triggerReads: 2,
  // s3backer's fixed read-ahead, too. Traced on zdb -r at 20 ms (session 26): with 3,
  // 43 of 65 reads of the file waited on a read-ahead still in flight (a GET took 30-40
  // ms under that load, the reader used a block every ~10 ms). zdb -r alternated with
  // s3backer over 6 pairs: 0.97x with 63 GETs for 3 (one outlier left out), 1.00x with 64
  // GETs for 4 (s3backer: 64).
  parallelWindow: 4,
};

export interface PrefetchStats {
  /** Read-ahead requests that returned a block. */
  prefetched: number;
  /** Reads served by a read-ahead (held or in flight). */
  used: number;
  /** Read-ahead results dropped unread (memory bound, overwritten, close). */
  wasted: number;
  /** Read-ahead requests that failed (the reader then fetched the block itself). */
  failed: number;
  /** Read-ahead requests in flight now. */
  inflight: number;
  /** Read-ahead indices waiting for a slot now. */
  queued: number;
  /** Read-ahead results held now, and their bytes. */
  held: number;
  heldBytes: number;
}

interface Ahead {
  /** Resolves to the block, or undefined when the request failed; never rejects. */
  readonly result: Promise<Buffer | null | undefined>;
  /** False once the block was written after this request started. */
  valid: boolean;
  /** A reader took this result; it must not be held as well. */
  claimed: boolean;
  /** What the request reads the block into. */
  readonly buf: Buffer;
}

interface Held {
  readonly data: Buffer | null;
  readonly buf: Buffer;
}

export class PrefetchStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats: PrefetchStats = {
    prefetched: 0,
    used: 0,
    wasted: 0,
    failed: 0,
    inflight: 0,
    queued: 0,
    held: 0,
    heldBytes: 0,
  };
  #inner: BlockStore;
  #log: Logger;
  #concurrency: number;
  #capacity: number;
  #closed = false;
  #abort = new AbortController();
  #streams: ReadStreams;
  /** Insertion-ordered, so the first entry is the oldest. */
  #queue = new Set<number>();
  #inflight = new Map<number, Ahead>();
  /** Every read-ahead request not yet settled, including invalidated ones (close waits for them). */
  #running = new Set<Promise<unknown>>();
  #held = new Map<number, Held>();
  #buffers: BlockBuffers;
  #heldBytes = 0;
  /** Blocks with a write in flight: no read-ahead of them starts. */
  #writing = new Map<number, number>();
  /** Foreground reads waiting on the store below (or on a read-ahead) right now. */
  #waiting = 0;
  /** When the last of them stopped waiting (performance.now()). */
  #lastWaitEnd = -Infinity;
  /** Blocks a reader is fetching itself: a read-ahead of them would be a second request. */
  #reading = new Map<number, number>();

  /** Blocks the layer above already holds: reading them ahead would be a wasted GET. */
  #skip: (index: number) => boolean;

  constructor(config: Partial<PrefetchConfig>, inner: BlockStore, deps: { log: Logger; db?: LocalDb; skip?: (index: number) => boolean }) {
    const c = { ...DEFAULT_PREFETCH_CONFIG, ...config };
    for (const [name, v] of Object.entries(c)) {
      const least = name === 'parallelWindow' ? 0 : 1;
      if (!Number.isInteger(v) || v < least) throw new S3zError('EUSAGE', `prefetch ${name} must be an integer of at least ${least}, not ${v}`);
    }
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#skip = deps.skip ?? (() => false);
    this.#log = deps.log.child({ layer: 'prefetch' });
    this.#concurrency = c.concurrency;
    this.#capacity = Math.max(1, Math.floor(c.maxHeldBytes / this.blockSize));
    // A window larger than what may be held would only fetch blocks to drop them.
    const maxWindow = Math.min(this.#capacity, Math.max(1, Math.floor(c.maxWindowBytes / this.blockSize)));
    this.#streams = new ReadStreams({
      blockCount: this.blockCount,
      initialWindow: c.initialWindow,
      maxWindow,
      streams: c.streams,
      triggerReads: c.triggerReads,
      parallelWindow: c.parallelWindow,
    });
    // A stream keeps about a window of results in flight or held.
    this.#buffers = new BlockBuffers(this.blockSize, maxWindow);
  }

  /** The pool read-ahead reads into: a reader that lends its `into` from it (ReadOptions.pool) is handed results without a copy. */
  get buffers(): BlockBuffers {
    return this.#buffers;
  }

  /** Milliseconds since a foreground read last waited on the store below; 0 while one waits. */
  get foregroundIdleMs(): number {
    return this.#waiting > 0 ? 0 : performance.now() - this.#lastWaitEnd;
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    // Background reads from above (hydration) run their own sweep: they may use
    // a read-ahead but do not steer it.
    const steer = opts?.priority !== 'background';
    // Other foreground reads still waiting below: the reader keeps several requests in
    // flight, i.e. it reads ahead itself (ZFS's prefetcher does, for the very blocks of
    // the file it reads). Ours on top would only fetch past the end of what it needs.
    const alone = this.#waiting === 0;
    const held = this.#unhold(index);
    if (held !== undefined) {
      this.stats.used++;
      // It was here before it was asked for: the window already hides the latency.
      if (steer) this.#observe(index, false, alone);
      this.#sync();
      return this.#handOut(held, opts);
    }
    let ahead = this.#inflight.get(index);
    if (ahead !== undefined && !ahead.claimed) ahead.claimed = true;
    else {
      ahead = undefined;
      this.#queue.delete(index);
    }
    // Schedule what follows before waiting, so read-ahead overlaps this read.
    // The reader waits (on a read-ahead still in flight, or on its own request): a
    // deeper window would have paid for itself.
    if (steer) this.#observe(index, true, alone);
    if (steer) this.#waiting++;
    try {
      if (ahead !== undefined) {
        const data = await ahead.result;
        if (data !== undefined && ahead.valid) {
          this.stats.used++;
          return this.#handOut({ data, buf: ahead.buf }, opts);
        }
        // Failed, or the block was written meanwhile: fetch it ourselves.
        this.#buffers.release(ahead.buf);
        checkOpen(this.#closed);
      }
      this.#reading.set(index, (this.#reading.get(index) ?? 0) + 1);
      try {
        return await this.#inner.read(index, opts);
      } finally {
        decrement(this.#reading, index);
      }
    } finally {
      if (steer && --this.#waiting === 0) this.#lastWaitEnd = performance.now();
    }
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    checkIndex(this, index, this.#closed);
    checkBlock(this, index, data);
    this.#writing.set(index, (this.#writing.get(index) ?? 0) + 1);
    this.#forget(index);
    try {
      await this.#inner.write(index, data);
    } finally {
      decrement(this.#writing, index);
      // Nothing can have been kept meanwhile (#writing, invalidation); dropping again
      // is cheap and keeps the invariant even if a future path misses one of those.
      this.#forget(index);
      this.#pump();
    }
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#inner.flush();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    this.stats.wasted += this.#held.size;
    this.#held.clear();
    this.#heldBytes = 0;
    for (const ahead of this.#inflight.values()) ahead.valid = false;
    this.#inflight.clear();
    this.#abort.abort();
    // The store below is closed only once no read-ahead request is left on it.
    await Promise.all(this.#running);
    this.#sync();
    await this.#inner.close();
  }

  /** Tells the read streams of a read and queues the read-ahead they answer. */
  #observe(index: number, waited: boolean, alone: boolean): void {
    const ahead = this.#streams.observe(index, waited, alone);
    if (ahead === undefined) return;
    for (let j = ahead.from; j <= ahead.to; j++) {
      if (!this.#enqueue(j)) {
        this.#streams.notScheduled(j);
        break;
      }
    }
    this.#pump();
  }

  /** False when the queue is full. */
  #enqueue(j: number): boolean {
    if (this.#queue.has(j) || this.#inflight.has(j) || this.#held.has(j) || this.#skip(j)) return true;
    if (this.#queue.size >= this.#capacity) return false;
    this.#queue.add(j);
    return true;
  }

  #pump(): void {
    // #running, not #inflight: an invalidated request still occupies the store below.
    while (!this.#closed && this.#queue.size > 0 && this.#running.size < this.#concurrency) {
      if (this.#held.size + this.#running.size >= this.#capacity) {
        if (!this.#dropOldest()) break;
        continue;
      }
      const j = this.#queue.values().next().value as number;
      this.#queue.delete(j);
      if (this.#held.has(j) || this.#inflight.has(j) || this.#writing.has(j) || this.#reading.has(j)) continue;
      this.#start(j);
    }
    this.#sync();
  }

  /**
   * A result for a reader: copied into the reader's buffer when it has one (the result's
   * buffer is then used again), else handed out as it is: for good, or to a reader whose
   * buffer is of our pool, who gives it back there (a 1 MiB copy less per block).
   */
  #handOut(held: Held, opts: ReadOptions | undefined): Buffer | null {
    const { data, buf } = held;
    const into = opts?.into;
    // The store below may answer in memory of its own (or with null): buf was then unused.
    const inBuf = data !== null && data.buffer === buf.buffer;
    if (inBuf && (into === undefined || opts?.pool === this.#buffers)) return data;
    const out = inBuf && into !== undefined ? copyBlock(data, into) : data;
    this.#buffers.release(buf);
    return out;
  }

  #start(j: number): void {
    const buf = this.#buffers.acquire();
    const result = this.#inner.read(j, { priority: 'background', signal: this.#abort.signal, into: buf }).then(
      (data) => data,
      (err: unknown) => {
        if (!this.#closed) {
          this.stats.failed++;
          this.#log.debug({ block: j, err: (err as Error)?.message }, 'read-ahead failed');
        }
        return undefined;
      },
    );
    const ahead: Ahead = { result, valid: true, claimed: false, buf };
    this.#inflight.set(j, ahead);
    const settled = result.then((data) => {
      this.#running.delete(settled);
      if (this.#inflight.get(j) === ahead) this.#inflight.delete(j);
      if (data !== undefined && ahead.valid && !this.#closed) {
        this.stats.prefetched++;
        if (!ahead.claimed) this.#hold(j, { data, buf });
      } else if (!ahead.claimed) {
        this.#buffers.release(buf);
      }
      this.#pump();
    });
    this.#running.add(settled);
  }

  /** Drops any read-ahead copy of a block being written. */
  #forget(index: number): void {
    if (this.#drop(index)) this.stats.wasted++;
    this.#queue.delete(index);
    const ahead = this.#inflight.get(index);
    if (ahead !== undefined) {
      ahead.valid = false;
      this.#inflight.delete(index);
    }
    this.#sync();
  }

  #dropOldest(): boolean {
    const oldest = this.#held.keys().next();
    if (oldest.done) return false;
    this.#drop(oldest.value);
    this.stats.wasted++;
    return true;
  }

  #hold(index: number, held: Held): void {
    this.#drop(index);
    this.#held.set(index, held);
    this.#heldBytes += held.data?.length ?? 0;
  }

  /** Takes a held result out; its buffer is then the caller's to give back. */
  #unhold(index: number): Held | undefined {
    const held = this.#held.get(index);
    if (held === undefined) return undefined;
    this.#heldBytes -= held.data?.length ?? 0;
    this.#held.delete(index);
    return held;
  }

  /** Drops a held result; true if there was one. */
  #drop(index: number): boolean {
    const held = this.#unhold(index);
    if (held === undefined) return false;
    this.#buffers.release(held.buf);
    return true;
  }

  #sync(): void {
    this.stats.inflight = this.#running.size;
    this.stats.queued = this.#queue.size;
    this.stats.held = this.#held.size;
    this.stats.heldBytes = this.#heldBytes;
  }
}

function decrement(map: Map<number, number>, key: number): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
