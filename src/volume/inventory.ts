// What a volume holds in S3, from a paginated LIST of its block keys: the source
// for `status`, `verify`, `erase`, `get` and (later) the zero map.
import type { ProgressDisplay } from '../progress-display.js';
import type { S3Bucket, S3Listed } from '../s3/bucket.js';
import type { BlockKeys } from './keys.js';

export interface StoredBlock extends S3Listed {
  /** The block the key names, or undefined for a stray key under blocks/. */
  readonly index: number | undefined;
}

/** Listed entries a BackgroundListing keeps waiting for its walk by default: ~10 MB, all of a 64 GiB volume of 1 MiB blocks. */
export const KEEP_LISTED = 64_000;

export async function* storedBlocks(bucket: S3Bucket, keys: BlockKeys, startAfter?: string): AsyncGenerator<StoredBlock[]> {
  for await (const page of bucket.list(keys.prefix, startAfter)) {
    yield page.map((o) => ({ ...o, index: keys.index(o.key) }));
  }
}

/**
 * One LIST pass run in the background, for a walk that starts at its first page
 * (get's, verify's, erase's) instead of after its last: `totals` resolves when the
 * pass ends; `pages()` hands the walk the pages in order as they arrive. At most
 * `keep` entries wait for the walk; once a page does not fit, the pass only counts,
 * and the walk lists what follows the last page kept itself. On s3rver a pass over
 * 1024 keys took 0.13-0.27 s, 2-4% of a 1 GiB get at 0 ms (docs/PERFORMANCE.md): the
 * walk does not LIST twice.
 */
export class BackgroundListing {
  readonly totals: Promise<{ blocks: number; bytes: number }>;
  #bucket: S3Bucket;
  #keys: BlockKeys;
  #queue: StoredBlock[][] = [];
  #queued = 0;
  /** False from the first page not kept on: the walk lists the rest itself. */
  #keeping = true;
  #lastKept: string | undefined;
  #ended = false;
  #failed: { err: unknown } | undefined;
  #wake: (() => void) | undefined;
  #walked = false;
  #stopped = false;

  /** `onCount`: the running count after each page (a display of a long LIST). */
  constructor(bucket: S3Bucket, keys: BlockKeys, keep = KEEP_LISTED, onCount?: (t: { blocks: number; bytes: number }) => void) {
    this.#bucket = bucket;
    this.#keys = keys;
    this.totals = this.#run(keep, onCount);
    // Whoever waits on it sees a failure; the walk sees it through pages() when it needs the pages.
    this.totals.catch(() => {});
  }

  /**
   * Runs `walk` (which takes this listing's pages) with `progress` started, its totals
   * unknown until the pass ends. However the walk ends, the count stops after the page in
   * flight and the display ends, with a last line only if the walk succeeded. A failed
   * pass only leaves the totals unknown (`onCountError` hears of it): the walk fails on
   * its own when it needs the pages.
   */
  async walkWith<T>(progress: ProgressDisplay | undefined, walk: () => Promise<T>, onCountError: (err: unknown) => void = () => {}): Promise<T> {
    if (progress) {
      progress.start(0, 0);
      this.totals.then((t) => progress.setTotal(t.blocks, t.bytes), onCountError);
    }
    let ok = false;
    try {
      const result = await walk();
      ok = true;
      return result;
    } finally {
      this.stop();
      progress?.done(ok);
    }
  }

  /**
   * Ends the count after the page in flight, so that a walk that failed or was
   * interrupted does not keep the process waiting for the rest of a long LIST.
   */
  stop(): void {
    this.#stopped = true;
  }

  /** The stored blocks' pages in order (stray keys included); one walk per listing. */
  async *pages(): AsyncGenerator<StoredBlock[]> {
    if (this.#walked) throw new Error('BackgroundListing.pages() called twice');
    this.#walked = true;
    for (;;) {
      const page = this.#queue.shift();
      if (page !== undefined) {
        this.#queued -= page.length;
        yield page;
        continue;
      }
      if (!this.#keeping) break;
      if (this.#ended) {
        if (this.#failed !== undefined) throw this.#failed.err;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    yield* storedBlocks(this.#bucket, this.#keys, this.#lastKept);
  }

  async #run(keep: number, onCount: ((t: { blocks: number; bytes: number }) => void) | undefined): Promise<{ blocks: number; bytes: number }> {
    let blocks = 0;
    let bytes = 0;
    try {
      for await (const page of storedBlocks(this.#bucket, this.#keys)) {
        if (this.#stopped) break;
        for (const o of page) {
          blocks++;
          bytes += o.size;
        }
        onCount?.({ blocks, bytes });
        if (this.#keeping && this.#queued + page.length <= keep) {
          this.#queue.push(page);
          this.#queued += page.length;
          this.#lastKept = page.at(-1)?.key ?? this.#lastKept;
        } else {
          this.#keeping = false;
        }
        this.#notify();
      }
      return { blocks, bytes };
    } catch (err) {
      this.#failed = { err };
      throw err;
    } finally {
      this.#ended = true;
      this.#notify();
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export function countStored(bucket: S3Bucket, keys: BlockKeys, onCount?: (t: { blocks: number; bytes: number }) => void): Promise<{ blocks: number; bytes: number }> {
  // Nothing kept: no walk follows.
  return new BackgroundListing(bucket, keys, 0, onCount).totals;
}
