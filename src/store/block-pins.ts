// Which blocks the cache is reading from its files right now, so that it never punches a
// block's file range out under a reader; and the slices of its files handed out for
// replies (the kernel reads them after the handler returned), which close() waits for.
//
// States per block: unpinned, or pinned by n readers; a pinned block whose drop was
// asked for is "deferred" until its last reader ends.
// Invariants:
// - pin() and unpin() pair up per reader (a slice is a reader until it is released);
// - a deferred drop is reported once, by the unpin() that leaves the block unpinned, and
//   forgotten if the block is written meanwhile (cancelDrop(): the write keeps it).

export class BlockPins {
  #readers = new Map<number, number>();
  #deferred = new Set<number>();
  #slicesOut = 0;
  #slicesBack: (() => void) | undefined;

  /** A reader of the block from now until unpin(). */
  pin(index: number): void {
    this.#readers.set(index, (this.#readers.get(index) ?? 0) + 1);
  }

  /** One reader ends; true when it was the last and a drop of the block waits for it (the caller drops it now). */
  unpin(index: number): boolean {
    const n = (this.#readers.get(index) ?? 1) - 1;
    if (n > 0) {
      this.#readers.set(index, n);
      return false;
    }
    this.#readers.delete(index);
    return this.#deferred.delete(index);
  }

  /** A drop of the block is asked for: true when readers hold it (the drop waits for the last), false when it may happen now. */
  deferDrop(index: number): boolean {
    if ((this.#readers.get(index) ?? 0) === 0) return false;
    this.#deferred.add(index);
    return true;
  }

  /** The block is being written again: a drop deferred before no longer applies. */
  cancelDrop(index: number): void {
    this.#deferred.delete(index);
  }

  /** A slice of a file handed out (its block is pinned by the caller until the slice comes back). */
  sliceOut(): void {
    this.#slicesOut++;
  }

  sliceBack(): void {
    if (--this.#slicesOut === 0) this.#slicesBack?.();
  }

  /** Resolves once every slice handed out came back. */
  async slicesBack(): Promise<void> {
    if (this.#slicesOut > 0) await new Promise<void>((resolve) => (this.#slicesBack = resolve));
  }
}
