// Block-sized buffers that are used again instead of allocated per upload.
//
// Why: on the write path every upload used to read its block into a fresh 1 MiB
// Buffer. Each one is a new ArrayBuffer: first-touch page faults, and 1 MiB of
// "external" memory that drives V8 into a full mark-compact every few dozen blocks
// (perf on the seq-write row: GC ~17% of the daemon's CPU). Shared memory, so the
// hash workers read the bytes in place (hash-pool.ts) without a staging copy.
//
// Invariants:
// - acquire() hands out a new Buffer object over a free backing store: a digest
//   memoized for an earlier user's Buffer (checksum.ts keys its memo by object) can
//   never be found for the new one.
// - A backing store is lent to at most one holder, from acquire() to release().
// - At most `keep` free backing stores are kept, and never more than MAX_IDLE_BYTES
//   of them (but always one): more holders at once allocate more, which are dropped
//   on release. Memory in use stays bounded by the callers' concurrency, idle memory
//   by those limits (32 MiB for 32 uploads of 1 MiB blocks; one 64 MiB block).
// - With `align` (for O_DIRECT, util/direct-io.ts), every buffer handed out starts on
//   that boundary, or none does (no addon to tell addresses): `aligned` says which.

import { alignmentGap } from '../util/direct-io.js';

/** Idle memory a pool keeps for reuse, whatever its block size. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;

export interface BlockBuffersOptions {
  /** Start every buffer on this boundary (a power of two), if the addon can tell addresses. */
  readonly align?: number;
}

export class BlockBuffers {
  readonly size: number;
  /** True when every buffer starts on the `align` boundary asked for. */
  readonly aligned: boolean;
  #keep: number;
  #align: number;
  #free: SharedArrayBuffer[] = [];
  #lent = new WeakSet<SharedArrayBuffer>();
  #out = 0;
  /** Where the aligned buffer starts in each backing store (shared memory never moves). */
  #starts = new WeakMap<SharedArrayBuffer, number>();

  constructor(size: number, keep: number, opts: BlockBuffersOptions = {}) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`block buffer size ${size}`);
    this.size = size;
    this.#keep = Math.max(1, Math.min(keep, Math.floor(MAX_IDLE_BYTES / size)));
    this.#align = opts.align ?? 1;
    this.aligned = this.#align <= 1 || alignmentGap(new Uint8Array(new SharedArrayBuffer(1)), this.#align) !== undefined;
    if (!this.aligned) this.#align = 1;
  }

  /** Buffers lent and not given back yet. */
  get out(): number {
    return this.#out;
  }

  acquire(): Buffer {
    const sab = this.#free.pop() ?? this.#allocate();
    this.#lent.add(sab);
    this.#out++;
    return Buffer.from(sab, this.#starts.get(sab) ?? 0, this.size);
  }

  #allocate(): SharedArrayBuffer {
    if (this.#align <= 1) return new SharedArrayBuffer(this.size);
    const sab = new SharedArrayBuffer(this.size + this.#align - 1);
    this.#starts.set(sab, alignmentGap(new Uint8Array(sab), this.#align) ?? 0);
    return sab;
  }

  /** Lends a buffer to `fn` for as long as it runs, and takes it back however it ends. */
  async lend<T>(fn: (buf: Buffer) => Promise<T>): Promise<T> {
    const buf = this.acquire();
    try {
      return await fn(buf);
    } finally {
      this.release(buf);
    }
  }

  /** Gives back a buffer from acquire(); its bytes may change from then on. */
  release(buf: Buffer): void {
    const sab = buf.buffer;
    if (!(sab instanceof SharedArrayBuffer) || !this.#lent.has(sab)) throw new Error('release() of a buffer this pool did not lend');
    this.#lent.delete(sab);
    this.#out--;
    if (this.#free.length < this.#keep) this.#free.push(sab);
  }

  /** Whether `buf` is over a backing store this pool has lent and not had back. */
  owns(buf: Buffer): boolean {
    const sab = buf.buffer;
    return sab instanceof SharedArrayBuffer && this.#lent.has(sab);
  }

  /** Free backing stores kept for reuse (for tests and stats). */
  get idle(): number {
    return this.#free.length;
  }
}
