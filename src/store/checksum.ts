// Block checksums: SHA-256 of the content (stored in object metadata and in cache
// entries), MD5 for the Content-MD5 header of small objects (descriptor, lease) and
// for `put`'s comparison of a block with its stored ETag.
//
// The event loop only steers (DESIGN §3): `sha256Of` hashes a block on a small
// pool of worker threads (hash-pool.ts), so several blocks hash in parallel while
// the one JS thread goes on dispatching. The sync `sha256Raw`/`sha256` remain for the
// layers that still call them; both share one memo, so a block is hashed once
// across layers whichever API reaches it first.
import { createHash } from 'node:crypto';
import { HashPool } from './hash-pool.js';

export const CHECKSUM_META = 's3z-sha256';

// A block passes through several layers (cache, guard, S3) that each need its
// digest: it is computed once per Buffer object. Safe because nobody mutates a
// block while a store holds it (the BlockStore contract), and memory used again
// (block-buffers.ts) comes back as a new Buffer object; a buffer read from
// anywhere is a new object.
const digests = new WeakMap<Buffer, Buffer>();
/** Hashes in flight on the threadpool, so concurrent askers share one. */
const pending = new WeakMap<Buffer, Promise<Buffer>>();

/**
 * Below this, a thread hop costs the main thread more than hashing in place
 * (SHA-256 runs at ~1-2 GB/s here; a round trip to a worker is tens of µs).
 */
const OFF_THREAD_MIN = 64 * 1024;

/** Process-wide: its idle workers never keep the process alive. */
const pool = new HashPool();

/** The raw 32 bytes, for local entries (LMDB) where base64 would only cost space. */
export function sha256Raw(data: Buffer): Buffer {
  let digest = digests.get(data);
  if (digest === undefined) {
    digest = createHash('sha256').update(data).digest();
    digests.set(data, digest);
  }
  return digest;
}

export function sha256(data: Buffer): string {
  return sha256Raw(data).toString('base64');
}

/**
 * The raw 32-byte SHA-256, computed off the main thread. The input is copied
 * (into shared staging memory) when a worker is free to take it, unless it is shared
 * memory already (a BlockBuffers buffer, read in place); like every memoized digest
 * it assumes nobody mutates the buffer.
 */
export function sha256Of(data: Buffer): Promise<Buffer> {
  const done = digests.get(data);
  if (done !== undefined) return Promise.resolve(done);
  if (data.length < OFF_THREAD_MIN) return Promise.resolve(sha256Raw(data));
  let p = pending.get(data);
  if (p === undefined) {
    p = pool.sha256(data).then(
      (digest) => {
        digests.set(data, digest);
        pending.delete(data);
        return digest;
      },
      (err: unknown) => {
        pending.delete(data);
        throw err;
      },
    );
    pending.set(data, p);
  }
  return p;
}

/** Boots the hashing threads ahead of the first block (a mount, before it serves). */
export function warmHashing(): void {
  pool.warm();
}

/**
 * Copies a block into `into` (the same length) and returns it: its digest, when known,
 * is known for `into` too, which holds the same bytes and, by the contract above, keeps them.
 */
export function copyBlock(data: Buffer, into: Buffer): Buffer {
  data.copy(into);
  const digest = digests.get(data);
  if (digest !== undefined) digests.set(into, digest);
  return into;
}

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

/**
 * The raw 16-byte MD5 of a block, computed off the main thread as sha256Of is (not
 * memoized: only `put` asks, once per block, to compare it with the stored ETag).
 */
export function md5Of(data: Buffer): Promise<Buffer> {
  if (data.length < OFF_THREAD_MIN) return Promise.resolve(createHash('md5').update(data).digest());
  return pool.md5(data);
}

const ZEROS = Buffer.alloc(1024 * 1024);

/** True when every byte is zero; such a block is stored as no object at all. */
export function isZero(data: Buffer): boolean {
  // Buffer.equals is a memcmp: ~60 GB/s here, against ~5 GB/s for a JS word loop.
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const part = data.subarray(at, at + ZEROS.length);
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}
