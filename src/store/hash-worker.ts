// One thread of the hash pool (hash-pool.ts): the SHA-256 (or MD5) of a block, read in
// place from shared memory. Owns nothing; the pool owns the staging buffer.
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';

/** What the pool hashes with: SHA-256 for checksums, MD5 to compare with an ETag. */
export type HashAlgorithm = 'sha256' | 'md5';

export interface HashRequest {
  readonly id: number;
  readonly algorithm: HashAlgorithm;
  /** A view of a SharedArrayBuffer the pool does not touch until the answer. */
  readonly data: Uint8Array;
}

export interface HashAnswer {
  readonly id: number;
  readonly digest: Uint8Array;
}

parentPort?.on('message', (m: HashRequest) => {
  const answer: HashAnswer = { id: m.id, digest: new Uint8Array(createHash(m.algorithm).update(m.data).digest()) };
  parentPort?.postMessage(answer);
});
