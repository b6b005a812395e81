// Reads answered with a slice of the cache's slab file (replyRange): large reads of
// local blocks; the bytes at the slice are the block's, and a pinned slice keeps its
// range from being punched out by eviction until it is released. A miss is answered
// with the fetched bytes, lent (cache-fill-buffers.test.ts has more), and then from the
// file. Small reads, zeros and ranges past the file's end come as buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import type { BlockBytes, BlockReply, BlockSlice } from '../../dist/store/types.js';

const BS = 1024 * 1024;
const COUNT = 8;

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-slices-'));
  const db = LocalDb.open(dir, { uuid: randomUUID(), size: BS * COUNT, blockSize: BS });
  const inner = new MemoryBlockStore(BS, COUNT);
  // Two clean blocks fit: a third evicts the least recently used.
  const cache = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, maxBytes: 2 * BS, writeDelayMs: 0 }, inner, { db, log: silentLogger });
  await cache.start();
  t.after(async () => {
    await cache.close().catch(() => {});
    await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  return { cache, inner };
}

function asSlice(reply: BlockReply): BlockSlice {
  assert.ok(reply !== null && !Buffer.isBuffer(reply) && 'fd' in reply, 'a slice');
  return reply;
}

function asLent(reply: BlockReply): BlockBytes {
  assert.ok(reply !== null && !Buffer.isBuffer(reply) && 'bytes' in reply, 'lent bytes');
  return reply;
}

function bytesAt(slice: BlockSlice): Buffer {
  const out = Buffer.alloc(slice.length);
  let done = 0;
  while (done < out.length) {
    const n = readSync(slice.fd, out, done, out.length - done, slice.position + done);
    if (n === 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

test('large reads of a local block come as a slice of its file, lent from the fetch on a miss; small, zero and past-the-end ones as buffers', async (t) => {
  const { cache, inner } = await setup(t);
  const data = randomBytes(BS);
  await cache.write(0, data);
  await cache.write(1, null);
  const whole = asSlice(await cache.replyRange(0, 0, BS));
  assert.ok(bytesAt(whole).equals(data), 'a dirty block written in this mount');
  whole.release();
  whole.release(); // a second release is a no-op
  await cache.flush();
  const part = asSlice(await cache.replyRange(0, 4096, 512 * 1024));
  assert.ok(bytesAt(part).equals(data.subarray(4096, 4096 + 512 * 1024)), 'a clean block too');
  part.release();
  const small = await cache.replyRange(0, 4096, 4096);
  assert.ok(Buffer.isBuffer(small) && small.equals(data.subarray(4096, 8192)), 'small reads stay a pread');
  assert.equal(await cache.replyRange(1, 0, BS), null, 'a block written as zeros has no bytes in the file');
  assert.equal(await cache.replyRange(2, 0, BS), null, 'a block stored nowhere reads as zeros');
  // Stored only below: fetched, answered from the fetch, then from the file.
  const below = randomBytes(BS);
  await inner.write(3, below);
  const reads = inner.stats.read;
  const fetched = asLent(await cache.replyRange(3, 0, BS));
  assert.ok(fetched.bytes.equals(below), 'a miss is answered from the fetched block');
  fetched.release();
  await cache.read(3); // waits for the fill: the file has the block
  const again = asSlice(await cache.replyRange(3, BS / 2, BS / 2));
  assert.ok(bytesAt(again).equals(below.subarray(BS / 2)));
  again.release();
  assert.equal(inner.stats.read, reads + 1, 'one fetch');
  // A partial write to a fresh block leaves its tail past the file's end: those bytes come as zeros.
  await cache.writeRange(7, 0, randomBytes(256 * 1024), 256 * 1024);
  const tail = await cache.replyRange(7, 512 * 1024, 512 * 1024);
  assert.ok(Buffer.isBuffer(tail) && tail.equals(Buffer.alloc(512 * 1024)), 'a range past the file end is zeros');
  assert.equal(cache.stats.slices, 3);
  assert.equal(cache.stats.fromFetch, 1);
});

test('eviction of a block under a pinned slice waits for its release', async (t) => {
  const { cache, inner } = await setup(t);
  const data = randomBytes(BS);
  await cache.write(0, data);
  await cache.flush(); // clean, in the LRU
  for (const i of [3, 4, 5]) await inner.write(i, randomBytes(BS));
  const slice = asSlice(await cache.replyRange(0, 0, BS));
  const evictionsBefore = cache.stats.evictions;
  for (const i of [3, 4, 5]) await cache.read(i); // fills push block 0 out
  assert.ok(cache.stats.evictions > evictionsBefore, 'block 0 was evicted');
  assert.equal(cache.holds(0), false);
  assert.ok(bytesAt(slice).equals(data), 'the pinned range still holds the block while the slice is out');
  slice.release();
  assert.ok(bytesAt(slice).equals(Buffer.alloc(BS)), 'released: the range is punched out');
  // and the block reads right again (fetched from below)
  assert.ok((await cache.read(0))?.equals(data));
});

test('close() waits for the slices handed out', async (t) => {
  const { cache } = await setup(t);
  await cache.write(0, randomBytes(BS));
  const slice = asSlice(await cache.replyRange(0, 0, BS));
  let closed = false;
  const closing = cache.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(closed, false, 'the files stay open while a slice is out');
  assert.equal(bytesAt(slice).length, BS);
  slice.release();
  await closing;
  assert.equal(closed, true);
});
