// What a volume holds in S3, from a paginated LIST of its block keys: the source
// for `status`, `verify`, `erase` and (later) the zero map.
import type { S3Bucket, S3Listed } from '../s3/bucket.js';
import type { BlockKeys } from './keys.js';

export interface StoredBlock extends S3Listed {
  /** The block the key names, or undefined for a stray key under blocks/. */
  readonly index: number | undefined;
}

export async function* storedBlocks(bucket: S3Bucket, keys: BlockKeys): AsyncGenerator<StoredBlock[]> {
  for await (const page of bucket.list(keys.prefix)) {
    yield page.map((o) => ({ ...o, index: keys.index(o.key) }));
  }
}

export async function countStored(bucket: S3Bucket, keys: BlockKeys): Promise<{ blocks: number; bytes: number }> {
  let blocks = 0;
  let bytes = 0;
  for await (const page of storedBlocks(bucket, keys)) {
    for (const o of page) {
      blocks++;
      bytes += o.size;
    }
  }
  return { blocks, bytes };
}
