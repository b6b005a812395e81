// A block being fetched for the cache's readers (cache.ts): one fill per block, whoever
// asks.
//
// States: fetching (no bytes yet) → published (the fetched block, checked by every layer
// below: readers may be answered from it) → retired (the block's file has it or could not
// take it; the buffer goes back to its pool). A fill that ends without publishing (zeros,
// an error, a block filled before it) answers its early readers with its outcome.
//
// Invariants
//   - a reader answered early gets a copy of its range (small readers) or the fetched
//     buffer's own bytes, lent until its release() (large readers, for a reply);
//   - retire() returns only once every lent range is back, and the fill's outcome
//     settles after that: a lent range never changes under its reader.

/**
 * Where a block's bytes are for a reader once its fill (or hit) is done: true, in its
 * file (verified); null, zeros; a Buffer, only here (the file refused them), the reader's own.
 */
export type Local = true | null | Buffer;

/** A reader's range of a block being fetched, answered from the fetched bytes. */
export interface Early {
  readonly bytes: Buffer;
  /** The fill's outcome, which settles after every lent range is back. */
  readonly fill: Promise<Local>;
  /** Gives lent bytes back (once; a copy's release does nothing). */
  release(): void;
}

const nothing = (): void => {};

export class BlockFill {
  /** The fill's outcome; the cache sets it as it starts the fill. */
  done: Promise<Local> = Promise.resolve(null);
  #data: Buffer | undefined;
  /** Early readers waiting for the bytes; each takes its range when called. */
  #waiting: Array<(data: Buffer) => void> = [];
  #lent = 0;
  #back: (() => void) | undefined;

  /**
   * `length` bytes at `at`, as soon as the block is published: a copy, or (`lend`) the
   * fetched buffer's own bytes until release(); or the fill's outcome when it ends
   * without publishing.
   */
  early(at: number, length: number, lend: boolean): Promise<Early | Local> {
    const answer = (data: Buffer): Early => (lend ? this.#lend(data, at, length) : { bytes: Buffer.from(data.subarray(at, at + length)), fill: this.done, release: nothing });
    if (this.#data !== undefined) return Promise.resolve(answer(this.#data));
    return Promise.race([new Promise<Early>((resolve) => this.#waiting.push((data) => resolve(answer(data)))), this.done]);
  }

  /** The fetched block is verified: its early readers are answered from it now. */
  publish(data: Buffer): void {
    this.#data = data;
    for (const reader of this.#waiting.splice(0)) reader(data);
  }

  /** Resolves once every lent range is back; the buffer is then no longer read here. */
  async retire(): Promise<void> {
    if (this.#lent > 0) await new Promise<void>((resolve) => (this.#back = resolve));
    this.#back = undefined;
    this.#data = undefined;
  }

  #lend(data: Buffer, at: number, length: number): Early {
    this.#lent++;
    let back = false;
    return {
      bytes: data.subarray(at, at + length),
      fill: this.done,
      release: () => {
        if (back) return;
        back = true;
        if (--this.#lent === 0) this.#back?.();
      },
    };
  }
}

export function isEarly(v: Early | Local): v is Early {
  return v !== null && v !== true && !Buffer.isBuffer(v);
}
