// Fills (blocks fetched from below on a miss) and the bases of partial writes read
// their block into buffers the cache uses again; readers are answered from the fetched
// block (a copy, or its bytes lent until released) or from the block's file. Over a store that fills the caller's buffer after a delay, with many fills at
// once and a cache small enough to evict: every reader gets its block's bytes, partial
// writes build on the right base, and a later mount finds every clean record right.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { PrefetchStore } from '../../dist/store/prefetch.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import type { BlockReply, ReadOptions } from '../../dist/store/types.js';

const BS = 256 * 1024;
const COUNT = 24;

/** Reads take a few ms, with the bytes landing in the caller's buffer at the end (as a GET body does). */
class SlowStore extends MemoryBlockStore {
  intoMemory = new Set<ArrayBufferLike>();
  override async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    const into = opts?.into;
    if (into !== undefined) {
      this.intoMemory.add(into.buffer);
      // The first bytes land at once, the rest later: a buffer still in use elsewhere shows it.
      (this.blocks.get(index) ?? Buffer.alloc(BS)).copy(into, 0, 0, BS / 2);
    }
    await sleep(randomInt(1, 5));
    return super.read(index, opts);
  }
}

/** The reply's bytes, copied; lent bytes and slices are released. */
function bytesOf(reply: BlockReply, length: number): Buffer {
  if (reply === null) return Buffer.alloc(length);
  if (Buffer.isBuffer(reply)) return Buffer.from(reply);
  if ('bytes' in reply) {
    const out = Buffer.from(reply.bytes);
    reply.release();
    return out;
  }
  const out = Buffer.alloc(reply.length);
  readSync(reply.fd, out, 0, reply.length, reply.position);
  reply.release();
  return out;
}

test('fills through reused buffers: readers get their bytes, partial writes the right base, a remount right records', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-fillbuf-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const dbs: LocalDb[] = [];
  t.after(async () => {
    for (const db of dbs) await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const inner = new SlowStore(BS, COUNT);
  const truth = new Map<number, Buffer>();
  for (let i = 0; i < COUNT; i++) {
    const d = randomBytes(BS);
    truth.set(i, d);
    await inner.write(i, d);
  }
  // Six blocks fit: the reads below keep evicting and fetching again.
  const config = { ...DEFAULT_CACHE_CONFIG, readOnly: false, maxBytes: 6 * BS, writeDelayMs: 0 };
  const db1 = LocalDb.open(dir, identity);
  dbs.push(db1);
  const cache = new CacheStore(config, inner, { db: db1, log: silentLogger });
  await cache.start();

  // Readers keep fills starting all the time (so buffers are taken again as soon as they
  // are given back) over blocks 0..19; a writer makes partial writes to 20..23 and reads
  // them back, which needs their base fetched whenever eviction took them.
  const WRITTEN = 20;
  const reader = async (): Promise<void> => {
    for (let n = 0; n < 60; n++) {
      const index = randomInt(WRITTEN);
      const at = randomInt(BS - 4096);
      const length = n % 2 === 0 ? 4096 : Math.min(BS - at, 128 * 1024 + randomInt(BS / 2));
      const reply = n % 3 === 0 ? await cache.readRange(index, at, length) : await cache.replyRange(index, at, length);
      assert.ok(bytesOf(reply, length).equals(truth.get(index)!.subarray(at, at + length)), `block ${index} at ${at}+${length}`);
    }
  };
  const writer = async (): Promise<void> => {
    for (let n = 0; n < 30; n++) {
      const index = WRITTEN + randomInt(COUNT - WRITTEN);
      const at = randomInt(BS - 8192);
      const piece = randomBytes(8192);
      const next = Buffer.from(truth.get(index)!);
      piece.copy(next, at);
      truth.set(index, next);
      await cache.writeRange(index, at, piece, piece.length);
      assert.ok((await cache.read(index))?.equals(next), `block ${index} after a write at ${at}`);
      if (n % 5 === 0) await cache.flush();
    }
  };
  await Promise.all([reader(), reader(), reader(), reader(), reader(), reader(), writer()]);
  await cache.flush();
  assert.ok(cache.stats.miss > 100, `fills ran (${cache.stats.miss})`);
  assert.ok(inner.intoMemory.size <= 24, `fill buffers used again (${inner.intoMemory.size} distinct for ${cache.stats.miss} misses)`);
  for (let i = 0; i < COUNT; i++) assert.ok(inner.blocks.get(i)?.equals(truth.get(i)!), `block ${i} as stored below`);
  await cache.close();
  await db1.close(); // as a mount does: one environment open per folder in a process (local-db.ts)

  // A later mount checks each local block against its clean record before using it.
  const db2 = LocalDb.open(dir, identity);
  dbs.push(db2);
  const below = new SlowStore(BS, COUNT); // the first was closed with its cache
  for (const [i, d] of inner.blocks) below.blocks.set(i, d);
  const again = new CacheStore(config, below, { db: db2, log: silentLogger });
  await again.start();
  let held = 0;
  for (let i = 0; i < COUNT; i++) {
    if (!again.holds(i)) continue;
    held++;
    assert.ok((await again.read(i))?.equals(truth.get(i)!), `block ${i} after the remount`);
  }
  assert.ok(held >= 4, `blocks kept across the mount (${held})`);
  assert.equal(again.stats.corrupt, 0, 'every clean record matched its bytes');
  assert.equal(below.stats.read, 0, 'nothing fetched again');
  await again.close();
});

/** A folder for one LocalDb (removed after the test) over a SlowStore of `blocks` random blocks. */
async function stored(t: TestContext, blocks: number): Promise<{ db: LocalDb; inner: SlowStore; truth: Buffer[] }> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-fillbuf-'));
  const db = LocalDb.open(dir, { uuid: randomUUID(), size: BS * blocks, blockSize: BS });
  t.after(async () => {
    await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const inner = new SlowStore(BS, blocks);
  const truth: Buffer[] = [];
  for (let i = 0; i < blocks; i++) {
    truth.push(randomBytes(BS));
    await inner.write(i, truth[i]!);
  }
  return { db, inner, truth };
}

/** A started read-only cache over `inner`, with the default settings. */
async function readOnlyCache(db: LocalDb, inner: SlowStore): Promise<CacheStore> {
  const cache = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: true }, inner, { db, log: silentLogger });
  await cache.start();
  return cache;
}

test('fills over a read-ahead that shares their pool take its buffers as they are, give every one back, and cache the right bytes', async (t) => {
  const blocks = 96;
  const { db, inner, truth } = await stored(t, blocks);
  const prefetch = new PrefetchStore({ maxWindowBytes: 8 * BS, maxHeldBytes: 16 * BS }, inner, { log: silentLogger });
  // Eight blocks fit: the second pass below evicts and fetches again.
  const config = { ...DEFAULT_CACHE_CONFIG, readOnly: true, maxBytes: 8 * BS };
  const cache = new CacheStore(config, prefetch, { db, log: silentLogger, fillBuffers: prefetch.buffers });
  await cache.start();
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < blocks; i++) {
      const reply = await cache.replyRange(i, 0, BS);
      assert.ok(bytesOf(reply, BS).equals(truth[i]!), `pass ${pass}, block ${i}`);
      // A reader that comes back for a piece reads it from the file, long after the buffer went back.
      if (i > 2) assert.ok(bytesOf(await cache.readRange(i - 2, 4096, 4096), 4096).equals(truth[i - 2]!.subarray(4096, 8192)), `block ${i - 2} again`);
    }
  }
  assert.ok(prefetch.stats.used > blocks, `read-ahead served the fills (${prefetch.stats.used})`);
  // Read-ahead kept landing in backing stores used again (a leak would take a new one per
  // fill: 192), and every handed-over buffer went back to the shared pool.
  assert.ok(inner.intoMemory.size < blocks, `${inner.intoMemory.size} distinct buffers for ${2 * blocks} fills`);
  await cache.close();
  assert.equal(prefetch.buffers.out, 0, 'every buffer of the shared pool is back');
});

test('readers of a block being fetched are answered from it once verified (small ones a copy, larger replies its bytes), later ones from its file', async (t) => {
  const blocks = 8;
  const { db, inner, truth } = await stored(t, blocks);
  await inner.write(blocks - 1, null); // zeros: nothing to copy, the reader gets zeros
  truth[blocks - 1] = Buffer.alloc(BS);
  const cache = await readOnlyCache(db, inner);
  const SMALL = 128 * 1024;
  const check = async (i: number, at: number, length: number, reply: Promise<BlockReply>): Promise<void> => {
    assert.ok(bytesOf(await reply, length).equals(truth[i]!.subarray(at, at + length)), `block ${i} at ${at}+${length}`);
  };
  // Per block, at once: four 4 KiB readers, one of 128 KiB (ZFS's), one of the whole block.
  await Promise.all(
    Array.from({ length: blocks }, (_, i) => [
      ...[0, 1, 2, 3].map((k) => check(i, k * 8192 + 512, 4096, cache.readRange(i, k * 8192 + 512, 4096))),
      check(i, SMALL, SMALL, cache.replyRange(i, SMALL, SMALL)),
      check(i, 0, BS, cache.replyRange(i, 0, BS)),
    ]).flat(),
  );
  assert.equal(inner.stats.read, blocks, 'one fetch per block');
  assert.equal(cache.stats.fromFetch, (blocks - 1) * 6, 'the readers of every stored block were answered from the fetch');
  // Once the fill is done (whole-block reads wait for it), a reader reads the file.
  for (let i = 0; i < blocks; i++) assert.ok((await cache.read(i))?.equals(truth[i]!) ?? i === blocks - 1);
  for (let i = 0; i < blocks; i++) await check(i, 4096, 4096, cache.readRange(i, 4096, 4096));
  for (let i = 0; i < blocks - 1; i++) {
    const reply = await cache.replyRange(i, 0, BS);
    assert.ok(reply !== null && 'fd' in reply, `block ${i}: a slice of its file now`);
    reply.release();
  }
  assert.equal(cache.stats.fromFetch, (blocks - 1) * 6, 'later readers read the file');
  await cache.close();
});

test('a reply lent the bytes of a block being fetched holds them unchanged, and the fill open, until released', async (t) => {
  const blocks = 40;
  const { db, inner, truth } = await stored(t, blocks);
  const cache = await readOnlyCache(db, inner);
  const lent = await cache.replyRange(0, 0, BS);
  assert.ok(lent !== null && 'bytes' in lent, 'lent bytes');
  // Whole-block readers wait for the fill, which ends only once the lent bytes are back.
  let filled = false;
  const whole = cache.read(0).then((b) => ((filled = true), b));
  // Fills one after another take buffers from the pool: one given back too early would be
  // written over under the lent reply.
  for (let i = 1; i < blocks; i++) assert.ok(bytesOf(await cache.replyRange(i, 0, BS), BS).equals(truth[i]!), `block ${i}`);
  assert.ok(lent.bytes.equals(truth[0]!), 'the lent bytes did not change');
  assert.equal(filled, false, 'the fill waits for its lent bytes');
  lent.release();
  assert.ok((await whole)?.equals(truth[0]!));
  assert.equal(filled, true);
  assert.equal(inner.stats.read, blocks, 'one fetch per block');
  await cache.close();
});

test('close() lets the fills of readers answered from their fetch finish: their blocks are cached for the next mount', async (t) => {
  const blocks = 12;
  const { db, inner, truth } = await stored(t, blocks);
  const cache = await readOnlyCache(db, inner);
  const replies = await Promise.all(Array.from({ length: blocks }, (_, i) => cache.replyRange(i, 0, BS)));
  replies.forEach((reply, i) => assert.ok(bytesOf(reply, BS).equals(truth[i]!), `block ${i}`));
  assert.equal(cache.stats.fromFetch, blocks, 'every reader was answered before its file write');
  await cache.close();
  const below = new SlowStore(BS, blocks); // the first was closed with its cache
  for (const [i, d] of inner.blocks) below.blocks.set(i, d);
  const again = await readOnlyCache(db, below);
  for (let i = 0; i < blocks; i++) assert.ok(again.holds(i), `block ${i} was cached`);
  for (let i = 0; i < blocks; i++) assert.ok((await again.read(i))?.equals(truth[i]!), `block ${i} from the cache`);
  assert.equal(below.stats.read, 0, 'nothing fetched again');
  await again.close();
});

test('past 16 fills in progress, readers of a block being fetched wait for its file: fills never pile up behind early answers', async (t) => {
  const blocks = 40;
  const { db, inner, truth } = await stored(t, blocks);
  const cache = await readOnlyCache(db, inner);
  // One first reader per block, all at once: each starts a fill. Small ones and replies of
  // whole blocks, alternately.
  const replies = Array.from({ length: blocks }, (_, i) => (i % 2 === 0 ? cache.readRange(i, 8192, 4096) : cache.replyRange(i, 0, BS)));
  for (let i = 0; i < blocks; i++) {
    const want = i % 2 === 0 ? truth[i]!.subarray(8192, 12288) : truth[i]!;
    assert.ok(bytesOf(await replies[i]!, want.length).equals(want), `block ${i}`);
  }
  assert.equal(cache.stats.fromFetch, 16, 'the first 16 got their range early, the rest waited for the file');
  assert.equal(inner.stats.read, blocks);
  await cache.close();
});
