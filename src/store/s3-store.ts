// The bottom layer: one S3 object per non-zero block. Stateless apart from its
// counters; every write goes straight to S3, so flush() has nothing to wait for.
// Invariants: a PUT carries the content's SHA-256 in metadata and as its signed
// payload hash (no Content-MD5: the signed hash already makes S3 refuse a damaged
// body); a zero block is a DELETE; a GET is returned only once its length and
// SHA-256 match (otherwise it is retried, then fails with ECORRUPT: wrong bytes
// never go up). Both hashes run off the main thread (sha256Of). Every PUT carries
// the volume's storage class and SSE (config.put), so no block escapes them.
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { S3Bucket, S3Object } from '../s3/bucket.js';
import { TransientError } from '../s3/errors.js';
import type { BlockKeys } from '../volume/keys.js';
import type { PutClass } from '../volume/storage.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { CHECKSUM_META, isZero, sha256Of } from './checksum.js';

export interface S3StoreStats {
  corrupt: number;
}

export interface S3StoreConfig {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly readOnly: boolean;
  /** Storage class and SSE of every PUT; absent: the server's defaults. */
  readonly put?: PutClass;
}

export class S3BlockStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats: S3StoreStats = { corrupt: 0 };
  #bucket: S3Bucket;
  #keys: BlockKeys;
  #readOnly: boolean;
  #put: PutClass | undefined;
  #closed = false;
  #log: Logger;

  constructor(config: S3StoreConfig, bucket: S3Bucket, keys: BlockKeys, log: Logger) {
    this.blockSize = config.blockSize;
    this.blockCount = config.blockCount;
    this.#readOnly = config.readOnly;
    this.#put = config.put;
    this.#bucket = bucket;
    this.#keys = keys;
    this.#log = log.child({ layer: 's3-store' });
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    const obj = await this.#bucket.get(this.#keys.key(index), (o) => this.#verify(index, o), opts?.into);
    return obj === null ? null : obj.body;
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    checkIndex(this, index, this.#closed);
    if (this.#readOnly) throw new S3zError('EROFS', `block ${index}: the store is read-only`);
    checkBlock(this, index, data);
    const key = this.#keys.key(index);
    if (data === null || isZero(data)) {
      await this.#bucket.delete(key);
      return;
    }
    const digest = await sha256Of(data);
    await this.#bucket.put(key, data, { sha256Hex: digest.toString('hex'), metadata: { [CHECKSUM_META]: digest.toString('base64') }, ...this.#put });
  }

  async flush(): Promise<void> {
    checkOpen(this.#closed);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  async #verify(index: number, obj: S3Object): Promise<void> {
    const expected = obj.metadata[CHECKSUM_META];
    let problem: string | undefined;
    if (obj.body.length !== this.blockSize) problem = `${obj.body.length} bytes instead of ${this.blockSize}`;
    else if (expected === undefined) problem = 'no checksum in its metadata';
    else if ((await sha256Of(obj.body)).toString('base64') !== expected) problem = 'content does not match its checksum';
    if (problem === undefined) return;
    this.stats.corrupt++;
    // debug only: each attempt fails alike; the caller reports the final ECORRUPT.
    this.#log.debug({ block: index, problem }, 'block failed verification');
    throw new TransientError(`block ${index}: ${problem}`, { code: 'ECORRUPT' });
  }
}
