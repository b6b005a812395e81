// One thread of the hash pool (hash-pool.ts): SHA-256 of a staged copy of a block,
// read in place from shared memory. Owns nothing; the pool owns the staging buffer.
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';

export interface HashRequest {
  readonly id: number;
  /** A view of a SharedArrayBuffer the pool does not touch until the answer. */
  readonly data: Uint8Array;
}

export interface HashAnswer {
  readonly id: number;
  readonly digest: Uint8Array;
}

parentPort?.on('message', (m: HashRequest) => {
  const answer: HashAnswer = { id: m.id, digest: new Uint8Array(createHash('sha256').update(m.data).digest()) };
  parentPort?.postMessage(answer);
});
