// The one interface every layer implements and wraps (DESIGN §3). A block index
// runs from 0 to blockCount-1; a block is exactly blockSize bytes or null (zeros).
//
// Contract for every BlockStore:
// - read(i) resolves to the last data written to i (null if never written, zero-written or trimmed),
//   or throws; it never resolves to bytes that were not written. The buffer may be shared with
//   a cache: callers must not mutate it (copy first, as a read-modify-write does).
// - write(i, data) borrows `data` until the returned promise settles: the caller leaves it
//   unchanged until then and may use it again after (the cache reuses its upload buffers);
//   a store that keeps the bytes beyond that copies them (memoized digests are keyed by
//   the Buffer object, which callers never reuse for other bytes). data is exactly
//   blockSize bytes. A store may turn all-zero data into null.
// - flush() is a barrier: every write that resolved before flush() was called is durable
//   in the bottom store (S3) when it resolves.
// - close() flushes, then frees resources; any later call throws ECLOSED.
import type { BlockBuffers } from './block-buffers.js';
export interface ReadOptions {
  /** Background reads (prefetch, hydration) yield to foreground ones. */
  readonly priority?: 'foreground' | 'background';
  readonly signal?: AbortSignal;
  /**
   * A block-sized buffer the caller will use again: a store may return it, filled, instead
   * of a buffer of its own (the S3 store reads the GET body into it). The caller owns it.
   */
  readonly into?: Buffer;
  /**
   * The pool `into` was lent from. A store holding the block in another buffer lent by
   * that same pool (a read-ahead result) may answer with that buffer instead of copying
   * it into `into`: the buffer is then the caller's, to give back to the pool as well.
   */
  readonly pool?: BlockBuffers;
}

export interface BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  read(index: number, opts?: ReadOptions): Promise<Buffer | null>;
  write(index: number, data: Buffer | null): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** `length` bytes at `position` of the open file `fd`, pinned until release(). */
export interface BlockSlice {
  readonly fd: number;
  readonly position: number;
  readonly length: number;
  release(): void;
}

/** Bytes lent for a reply (a block being fetched): unchanged until release(). */
export interface BlockBytes {
  readonly bytes: Buffer;
  release(): void;
}

/** What replyRange answers: a slice of a local file, lent bytes, bytes, or null for zeros. */
export type BlockReply = BlockSlice | BlockBytes | Buffer | null;

/**
 * A store that also takes byte ranges within a block (the cache layer): a 4 KiB read
 * or a 128 KiB write costs that many bytes of local I/O, not a whole block.
 * - readRange resolves to `length` bytes from `at`, or null when they read as zeros;
 * - writeRange writes `data` at `at` (null: `length` zero bytes), borrowing `data` as
 *   write() does; the same durability and flush contract as write().
 */
export interface RangeStore extends BlockStore {
  readRange(index: number, at: number, length: number, opts?: ReadOptions): Promise<Buffer | null>;
  /**
   * The same bytes as readRange, for a reply, possibly as a range of a local file (the
   * store fetches the block into it first when it must) or as bytes lent by the store:
   * such a range stays as it is (not evicted, its file open, its bytes unchanged) until
   * release(), which the caller must call exactly once, soon (a fetch waits for it).
   */
  replyRange?(index: number, at: number, length: number, opts?: ReadOptions): Promise<BlockReply>;
  writeRange(index: number, at: number, data: Buffer | null, length: number): Promise<void>;
}

/**
 * Reads answered below JS (the FUSE binding's direct reads, fuse/direct-reads.ts): the
 * cache grants a block while its local file holds the block's verified bytes, and
 * revokes it before it changes or punches them.
 */
export interface DirectReads {
  /** File number `file` of the layout (the slab files) is open as `fd` (said again before each grant; cheap). */
  file(file: number, fd: number): void;
  /** False if it could not (a memory bound): reads of the block keep coming to JS. */
  grant(index: number): boolean;
  /** Returns once no direct read of the block runs; later reads come to JS. */
  revoke(index: number): void;
  /** Blocks read directly since the last call, for eviction's recency; lossy. */
  touched(): ArrayLike<number>;
  /** Returns once no direct read runs; none starts again (the files may then close). */
  disable(): void;
}

export function isRangeStore(store: BlockStore): store is RangeStore {
  return typeof (store as Partial<RangeStore>).readRange === 'function' && typeof (store as Partial<RangeStore>).writeRange === 'function';
}
