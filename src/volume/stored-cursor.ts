// Walks a volume's LIST in step with a walk of its blocks in index order: block
// keys sort by index (keys.ts), so `put` and `get` learn whether block i is stored,
// and its ETag, with one LIST request per 1000 stored blocks and one page in memory,
// however large the volume. Given a listing running alongside (inventory.ts), it walks
// the pages that listing kept and LISTs only what follows them.
// Calls to at() must come with increasing indexes.
import type { S3Bucket } from '../s3/bucket.js';
import type { BlockKeys } from './keys.js';
import { storedBlocks, type BackgroundListing, type StoredBlock } from './inventory.js';

export class StoredCursor {
  #pages: AsyncIterator<readonly StoredBlock[]>;
  #page: readonly StoredBlock[] = [];
  #at = 0;
  #ended = false;

  constructor(bucket: S3Bucket, keys: BlockKeys, listed?: BackgroundListing) {
    this.#pages = (listed === undefined ? storedBlocks(bucket, keys) : listed.pages())[Symbol.asyncIterator]();
  }

  /** The stored object of block `index`, or undefined when it has none. */
  async at(index: number): Promise<StoredBlock | undefined> {
    for (;;) {
      const b = await this.#peek();
      if (b === undefined) return undefined;
      // Stray keys (no index) and blocks the walk has passed are skipped.
      if (b.index === undefined || b.index < index) {
        this.#at++;
        continue;
      }
      return b.index === index ? b : undefined;
    }
  }

  /** Every stored block from `index` on (stray keys excluded), in order. */
  async *from(index: number): AsyncGenerator<StoredBlock> {
    for (;;) {
      const b = await this.#peek();
      if (b === undefined) return;
      this.#at++;
      if (b.index !== undefined && b.index >= index) yield b;
    }
  }

  async #peek(): Promise<StoredBlock | undefined> {
    while (this.#at >= this.#page.length) {
      if (this.#ended) return undefined;
      const r = await this.#pages.next();
      if (r.done) {
        this.#ended = true;
        return undefined;
      }
      this.#page = r.value;
      this.#at = 0;
    }
    return this.#page[this.#at];
  }
}

/** True when a listed ETag is the MD5 of `md5Hex`'s content (single-part uploads; S3, RGW and s3rver). */
export function etagMatches(etag: string | undefined, md5Hex: string): boolean {
  return etag !== undefined && etag.replace(/"/g, '').toLowerCase() === md5Hex;
}
