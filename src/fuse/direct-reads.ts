// Direct reads: reads that libfuse's worker threads answer themselves, from a file,
// for the blocks JS has granted (native/s3zdirect.c), without waking the JS thread.
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
}

export interface DirectCounts {
  readonly reads: number;
  readonly bytes: number;
}

/** Larger devices are refused (the table's pointer array is sized by it). */
export const MAX_DIRECT_BLOCKS = 2 ** 32;

export class DirectReadTable implements DirectReads {
  #native: Native;
  #handle: NativeSession;
  #blockCount: number;

  /** @internal FuseSession.directReads() makes it. */
  constructor(native: Native, handle: NativeSession, layout: DirectLayout) {
    const { ino, blockSize, blockCount, fileBytes } = layout;
    for (const [name, v] of Object.entries({ ino, blockSize, blockCount, fileBytes })) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`direct reads: ${name} must be a positive integer`);
    }
    if (blockCount > MAX_DIRECT_BLOCKS) throw new RangeError(`direct reads: at most ${MAX_DIRECT_BLOCKS} blocks`);
    if (fileBytes % blockSize !== 0) throw new RangeError('direct reads: fileBytes must be a multiple of blockSize');
    native.directEnable(handle, ino, blockSize, blockCount, fileBytes);
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
    const [reads = 0, bytes = 0] = this.#native.directCounts(this.#handle);
    return { reads, bytes };
  }

  #check(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#blockCount) throw new RangeError(`direct reads: block ${index} out of range`);
  }
}
