// Direct reads: reads that libfuse's worker threads answer themselves, from a file,
// for the blocks JS has granted (native/s3zdirect.c), without waking the JS thread:
// by default from a mapping of the file, which the kernel copies from straight into
// the reader's buffer (one copy of each byte, not two as with a pread).
// The binding gives the mechanism; which blocks are granted is the caller's policy
// (the cache: a verified local block, until it changes or leaves).
// Invariants: arguments are checked here before any native call; after revoke(i)
// returns no thread reads block i's file range, and after disable() none reads any
// file registered here (so the caller may then punch ranges, or close the files).
import type { DirectReads } from '../store/types.js';
import type { Native, NativeSession } from './native.js';

export interface DirectLayout {
  /** The inode whose reads may be answered directly. */
  readonly ino: number;
  readonly blockSize: number;
  readonly blockCount: number;
  /** Bytes of the device per file: block i is at (i * blockSize) % fileBytes of file (i * blockSize) / fileBytes. */
  readonly fileBytes: number;
  /**
   * Answer from mappings of the files, and let go of the file pages they made resident
   * after this many bytes (they count in the process's RSS; the page cache keeps them).
   * 0: answer by pread. Default DIRECT_MAP_LIMIT.
   */
  readonly mapLimit?: number;
  /** Smaller reads go by pread even with mappings. Default DIRECT_MAP_MIN_READ. */
  readonly mapMinRead?: number;
}

export interface DirectCounts {
  readonly reads: number;
  readonly bytes: number;
  /** Times the mapped file pages were let go of. */
  readonly drops: number;
}

/**
 * With this limit, 1 GiB warm sequential reads (dd bs=1M iflag=direct, two mounts side
 * by side) ran at a median 5.8 GB/s from mappings against 4.2 by pread, for ~32 MiB more
 * peak RSS (docs/PERFORMANCE.md, session 11). Without a limit, every page read this way
 * stays in the daemon's RSS (1.1 GB after 1 GiB).
 */
export const DIRECT_MAP_LIMIT = 32 * 1024 * 1024;

/**
 * Once the mapped pages were let go of, a read from the mapping pays page faults, which
 * only a large read's saved copy outweighs. Two mounts side by side, fio at iodepth 16
 * (docs/PERFORMANCE.md, session 11): 4 KiB random reads 97.6k IOPS by pread against
 * 82.3k mapped, 128 KiB 27.0k against 25.1k; 1 MiB sequential reads 5.8 GB/s mapped
 * against 4.2 by pread.
 */
export const DIRECT_MAP_MIN_READ = 256 * 1024;

/** Larger devices are refused (the table's pointer array is sized by it). */
export const MAX_DIRECT_BLOCKS = 2 ** 32;

export class DirectReadTable implements DirectReads {
  #native: Native;
  #handle: NativeSession;
  #blockCount: number;

  /** @internal FuseSession.directReads() makes it. */
  constructor(native: Native, handle: NativeSession, layout: DirectLayout) {
    const { ino, blockSize, blockCount, fileBytes, mapLimit = DIRECT_MAP_LIMIT, mapMinRead = DIRECT_MAP_MIN_READ } = layout;
    for (const [name, v] of Object.entries({ ino, blockSize, blockCount, fileBytes })) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`direct reads: ${name} must be a positive integer`);
    }
    for (const [name, v] of Object.entries({ mapLimit, mapMinRead })) {
      if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`direct reads: ${name} must be a non-negative integer`);
    }
    if (blockCount > MAX_DIRECT_BLOCKS) throw new RangeError(`direct reads: at most ${MAX_DIRECT_BLOCKS} blocks`);
    if (fileBytes % blockSize !== 0) throw new RangeError('direct reads: fileBytes must be a multiple of blockSize');
    native.directEnable(handle, ino, blockSize, blockCount, fileBytes, mapLimit, mapMinRead);
    this.#native = native;
    this.#handle = handle;
    this.#blockCount = blockCount;
  }

  file(file: number, fd: number): void {
    if (!Number.isSafeInteger(file) || file < 0 || !Number.isInteger(fd) || fd < -1) throw new TypeError(`direct reads: file ${file}, fd ${fd}`);
    this.#native.directFile(this.#handle, file, fd);
  }

  /** False when the table is at its memory bound: reads of the block stay with the handler. No effect after disable(). */
  grant(index: number): boolean {
    this.#check(index);
    return this.#native.directGrant(this.#handle, index);
  }

  revoke(index: number): void {
    this.#check(index);
    this.#native.directRevoke(this.#handle, index);
  }

  touched(): ArrayLike<number> {
    return this.#native.directDrain(this.#handle);
  }

  disable(): void {
    this.#native.directDisable(this.#handle);
  }

  get counts(): DirectCounts {
    const [reads = 0, bytes = 0, drops = 0] = this.#native.directCounts(this.#handle);
    return { reads, bytes, drops };
  }

  #check(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#blockCount) throw new RangeError(`direct reads: block ${index} out of range`);
  }
}
