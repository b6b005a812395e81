// Which segments of each dirty block were written since the block last went up: the
// write-back starts a block's upload early once every segment was written (ZFS wrote all
// the pieces of its block, or dd the whole block), since waiting for more pieces would
// only push the upload into the next fsync.
// Invariants: only whole segments count (a partial one may still wait for the rest of
// its bytes); a block's mask is dropped once it is complete or the block went up, so
// memory holds a small mask per block being written in pieces, not one per device block.
import { segmentSize } from './cache-records.js';

export class DirtyCover {
  #segment: number;
  #count: number;
  #masks = new Map<number, Uint8Array>();

  constructor(blockSize: number) {
    this.#segment = segmentSize(blockSize);
    this.#count = blockSize / this.#segment;
  }

  /** Notes a write of `length` bytes at `at`; true once every segment was written since the block went up. */
  written(index: number, at: number, length: number): boolean {
    if (at === 0 && length === this.#segment * this.#count) {
      this.#masks.delete(index);
      return true;
    }
    const seg = this.#segment;
    let mask = this.#masks.get(index);
    if (mask === undefined) {
      mask = new Uint8Array(this.#count);
      this.#masks.set(index, mask);
    }
    for (let s = Math.ceil(at / seg); (s + 1) * seg <= at + length; s++) mask[s] = 1;
    if (!mask.every((b) => b === 1)) return false;
    this.#masks.delete(index);
    return true;
  }

  /** The block went up (or is gone): its next write starts a new count. */
  forget(index: number): void {
    this.#masks.delete(index);
  }

  /** Blocks with a partial count (for tests). */
  get size(): number {
    return this.#masks.size;
  }
}
