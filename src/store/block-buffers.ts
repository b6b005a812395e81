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
//   by those limits (16 MiB for 16 uploads of 1 MiB blocks; one 64 MiB block).

/** Idle memory a pool keeps for reuse, whatever its block size. */
const MAX_IDLE_BYTES = 64 * 1024 * 1024;

export class BlockBuffers {
  readonly size: number;
  #keep: number;
  #free: SharedArrayBuffer[] = [];
  #lent = new WeakSet<SharedArrayBuffer>();

  constructor(size: number, keep: number) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`block buffer size ${size}`);
    this.size = size;
    this.#keep = Math.max(1, Math.min(keep, Math.floor(MAX_IDLE_BYTES / size)));
  }

  acquire(): Buffer {
    const sab = this.#free.pop() ?? new SharedArrayBuffer(this.size);
    this.#lent.add(sab);
    return Buffer.from(sab, 0, this.size);
  }

  /** Gives back a buffer from acquire(); its bytes may change from then on. */
  release(buf: Buffer): void {
    const sab = buf.buffer;
    if (!(sab instanceof SharedArrayBuffer) || !this.#lent.has(sab)) throw new Error('release() of a buffer this pool did not lend');
    this.#lent.delete(sab);
    if (this.#free.length < this.#keep) this.#free.push(sab);
  }

  /** Free backing stores kept for reuse (for tests and stats). */
  get idle(): number {
    return this.#free.length;
  }
}
