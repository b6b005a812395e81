// The cache layer over a memory store: journal before acknowledgement, replay
// after a crash, flush as a barrier, eviction, backpressure, merged misses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { CacheStore, DEFAULT_CACHE_CONFIG, type CacheConfig } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import type { BlockStore, ReadOptions } from '../../dist/store/types.js';

const BS = 4096;
const COUNT = 1024;

/** A memory store whose calls can be held back, and that counts what reaches it. */
class GatedStore extends MemoryBlockStore {
  gate: Promise<void> = Promise.resolve();
  open!: () => void;
  writesInFlight = 0;
  maxWritesInFlight = 0;
  readsSeen = 0;
  readDelayMs = 0;
  /** Blocks whose writes fail (after the gate). */
  failing = new Set<number>();
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  override async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    this.readsSeen++;
    if (this.readDelayMs) await new Promise((r) => setTimeout(r, this.readDelayMs));
    return super.read(index, opts);
  }
  override async write(index: number, data: Buffer | null): Promise<void> {
    this.writesInFlight++;
    this.maxWritesInFlight = Math.max(this.maxWritesInFlight, this.writesInFlight);
    try {
      await this.gate;
      if (this.failing.has(index)) throw new Error(`block ${index}: the store refused the write`);
      await super.write(index, data);
    } finally {
      this.writesInFlight--;
    }
  }
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, config: Partial<CacheConfig> = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-cache-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const dbs: LocalDb[] = [];
  const openDb = () => {
    const db = LocalDb.open(dir, identity);
    dbs.push(db);
    return db;
  };
  const make = (inner: BlockStore, db: LocalDb) =>
    new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, ...config }, inner, { db, log: silentLogger });
  t.after(async () => {
    for (const db of dbs) await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, openDb, make };
}

test('a write is journaled before it resolves; flush waits until it reached the store below', async (t) => {
  const { openDb, make } = await setup(t);
  const inner = new GatedStore(BS, COUNT);
  const db = openDb();
  const cache = make(inner, db);
  await cache.start();
  inner.hold();
  const data = randomBytes(BS);
  await cache.write(5, Buffer.from(data));
  assert.ok(db.dirty.get(5) !== undefined, 'journal entry committed');
  assert.equal(inner.blocks.has(5), false, 'not uploaded yet');
  assert.deepEqual(await cache.read(5), data, 'reads see the write at once');
  let flushed = false;
  const f = cache.flush().then(() => (flushed = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(flushed, false, 'flush waits for the upload');
  inner.open();
  await f;
  assert.deepEqual(inner.blocks.get(5), data);
  assert.equal(db.dirty.get(5), undefined, 'journal entry gone once uploaded');
  assert.equal(cache.stats.dirtyBlocks, 0);
  await cache.close();
});

test('after a crash the journal is replayed to the store below before start() resolves', async (t) => {
  const { openDb, make } = await setup(t);
  const stuck = new GatedStore(BS, COUNT);
  stuck.hold(); // uploads never finish: the process "dies" with dirty blocks
  const db1 = openDb();
  const cache1 = make(stuck, db1);
  await cache1.start();
  const written = new Map<number, Buffer>();
  for (const i of [1, 2, 3, 700]) {
    const d = randomBytes(BS);
    written.set(i, d);
    await cache1.write(i, Buffer.from(d));
  }
  await cache1.write(2, null); // a zero write is journaled too
  written.delete(2);
  // Crash: no close(), no flush. A new process opens the same cache.
  await db1.close();
  const fresh = new MemoryBlockStore(BS, COUNT);
  fresh.blocks.set(2, Buffer.alloc(BS, 7)); // S3 still has the old block 2
  const cache2 = make(fresh, openDb());
  await cache2.start();
  assert.equal(cache2.stats.replayed, 4);
  assert.equal(cache2.stats.dirtyBlocks, 0);
  for (const [i, d] of written) assert.deepEqual(fresh.blocks.get(i), d, `block ${i} replayed`);
  assert.equal(fresh.blocks.has(2), false, 'the zero write deleted block 2');
  await cache2.close();
});

test('a read-only cache refuses to start over an unreplayed journal', async (t) => {
  const { openDb, make } = await setup(t);
  const stuck = new GatedStore(BS, COUNT);
  stuck.hold();
  const db1 = openDb();
  const cache1 = make(stuck, db1);
  await cache1.start();
  await cache1.write(1, randomBytes(BS));
  await db1.close();
  const ro = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: true }, new MemoryBlockStore(BS, COUNT), { db: openDb(), log: silentLogger });
  await assert.rejects(ro.start(), /not yet in S3/);
});

test('rewrites coalesce, one upload per block at a time, uploads bounded', async (t) => {
  const { openDb, make } = await setup(t, { uploadConcurrency: 3 });
  const inner = new GatedStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  inner.hold();
  for (let i = 0; i < 10; i++) await cache.write(i, randomBytes(BS));
  const last = randomBytes(BS);
  await cache.write(0, Buffer.from(last));
  assert.ok(inner.maxWritesInFlight <= 3, `max in flight ${inner.maxWritesInFlight}`);
  inner.open();
  await cache.flush();
  assert.deepEqual(inner.blocks.get(0), last, 'the last write wins');
  assert.ok(inner.stats.write <= 12, `uploads ${inner.stats.write}`);
  assert.ok(inner.maxWritesInFlight <= 3);
  await cache.close();
});

test('backpressure: writes wait while dirty data is at its bound', async (t) => {
  const { openDb, make } = await setup(t, { maxDirtyBytes: 4 * BS, uploadConcurrency: 2 });
  const inner = new GatedStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  inner.hold();
  for (let i = 0; i < 4; i++) await cache.write(i, randomBytes(BS));
  let fifth = false;
  const p = cache.write(4, randomBytes(BS)).then(() => (fifth = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fifth, false, 'the fifth write waits');
  assert.equal(cache.stats.dirtyBlocks, 4);
  inner.open();
  await p;
  await cache.close();
});

test('misses are merged; hits cost nothing below; clean blocks are evicted LRU, dirty never', async (t) => {
  const { openDb, make } = await setup(t, { maxBytes: 8 * BS });
  const inner = new GatedStore(BS, COUNT);
  for (let i = 0; i < 20; i++) inner.blocks.set(i, Buffer.alloc(BS, i + 1));
  inner.readDelayMs = 20;
  const db = openDb();
  const cache = make(inner, db);
  await cache.start();
  const same = await Promise.all([cache.read(3), cache.read(3), cache.read(3)]);
  assert.equal(inner.readsSeen, 1, 'three reads of one block, one request');
  for (const b of same) assert.deepEqual(b, Buffer.alloc(BS, 4));
  await cache.read(3);
  assert.equal(inner.readsSeen, 1, 'hit');
  inner.hold();
  await cache.write(100, randomBytes(BS)); // dirty, never evicted
  for (let i = 0; i < 20; i++) await cache.read(i);
  await db.committed();
  assert.ok(cache.stats.evictions >= 12, `evictions ${cache.stats.evictions}`);
  assert.ok(cache.stats.blocks <= 9, `blocks ${cache.stats.blocks}`);
  assert.ok(db.local.get(100) !== undefined && db.dirty.get(100) !== undefined, 'the dirty block stays');
  const before = inner.readsSeen;
  await cache.read(0); // evicted long ago
  assert.equal(inner.readsSeen, before + 1);
  inner.open();
  await cache.close();
});

test('a cached block whose file bytes fail its checksum is fetched again at its first use in a mount, never returned', async (t) => {
  const { dir, openDb, make } = await setup(t);
  const inner = new GatedStore(BS, COUNT);
  const good = Buffer.alloc(BS, 9);
  inner.blocks.set(7, good);
  const db1 = openDb();
  const cache1 = make(inner, db1);
  await cache1.start();
  await cache1.read(7);
  await cache1.close();
  await db1.close();
  // Bit rot in the block's file while unmounted.
  const fh = await open(path.join(dir, 'data', 'slab-0'), 'r+');
  await fh.write(Buffer.from([0x55]), 0, 1, 7 * BS + 100);
  await fh.close();
  const inner2 = new GatedStore(BS, COUNT);
  inner2.blocks.set(7, good);
  const cache2 = make(inner2, openDb());
  await cache2.start();
  assert.deepEqual(await cache2.read(7), good);
  assert.equal(inner2.readsSeen, 1, 'fetched again');
  assert.equal(cache2.stats.corrupt, 1);
  assert.deepEqual(await cache2.readRange(7, 64, 16), good.subarray(64, 80), 'and cached again');
  assert.equal(inner2.readsSeen, 1);
  await cache2.close();
});

test('rewrites racing their own uploads: after flush the store below holds the last write of every block', async (t) => {
  const { openDb, make } = await setup(t, { uploadConcurrency: 4 });
  const inner = new MemoryBlockStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  const last = new Map<number, Buffer>();
  for (let round = 0; round < 150; round++) {
    const writes: Promise<void>[] = [];
    for (const i of [0, 1, 2]) {
      const d = randomBytes(BS);
      last.set(i, d);
      // Sequential per block (as the FUSE layer orders them) but not awaited: uploads overlap commits.
      writes.push(cache.write(i, Buffer.from(d)));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(writes);
  }
  await cache.flush();
  for (const [i, d] of last) assert.deepEqual(inner.blocks.get(i), d, `block ${i}`);
  await cache.close();
});

test('flush is a barrier for a block rewritten while it waits for an upload slot', async (t) => {
  const { openDb, make } = await setup(t, { uploadConcurrency: 1 });
  const inner = new GatedStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  inner.hold();
  const a = randomBytes(BS);
  const b = randomBytes(BS);
  await cache.write(1, Buffer.from(a));
  await cache.write(2, Buffer.from(b));
  let flushed = false;
  const f = cache.flush().then(() => (flushed = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(inner.writesInFlight, 1, 'block 1 uploading, block 2 waiting for the one slot');
  // Block 2 again, after the flush began: its first write is still in no upload.
  const b2 = randomBytes(BS);
  await cache.write(2, Buffer.from(b2));
  inner.open();
  inner.hold(); // block 1 goes through; block 2's upload is held
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(inner.blocks.get(1), a);
  assert.equal(inner.blocks.has(2), false);
  assert.equal(flushed, false, 'flush waits for block 2, written before it');
  inner.open();
  await f;
  assert.deepEqual(inner.blocks.get(2), b2, 'the store below holds block 2 (its last write)');
  await cache.close();
});

test('a flush fails when the upload of a block written before it fails, even one rewritten since', async (t) => {
  const { openDb, make } = await setup(t, { uploadConcurrency: 1 });
  const inner = new GatedStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  inner.hold();
  await cache.write(1, randomBytes(BS));
  await cache.write(2, randomBytes(BS));
  const f = cache.flush();
  const outcome = f.then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  await new Promise((r) => setTimeout(r, 20));
  await cache.write(2, randomBytes(BS)); // after the flush began: its upload carries a newer write
  inner.failing.add(2); // block 1 goes up; block 2 fails
  inner.open();
  const settled = await Promise.race([outcome, new Promise((r) => setTimeout(() => r('still waiting'), 1000))]);
  assert.match(String(settled), /refused the write/, 'the fsync hears the failure instead of waiting');
  inner.failing.clear();
  await cache.flush(); // the retry uploads it
  await cache.close();
});

test('nothing goes up before LMDB has synced the journal entry of what goes up', async (t) => {
  const { openDb, make } = await setup(t);
  const inner = new GatedStore(BS, COUNT);
  const db = openDb();
  let synced!: () => void;
  const gate = new Promise<void>((r) => (synced = r));
  const durable = db.durable.bind(db);
  db.durable = () => gate.then(durable);
  const cache = make(inner, db);
  await cache.start();
  const data = randomBytes(BS);
  await cache.write(4, Buffer.from(data));
  const f = cache.flush();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(inner.writesInFlight + inner.stats.write, 0, 'no upload while the journal is not on disk');
  synced();
  await f;
  assert.deepEqual(inner.blocks.get(4), data);
  await cache.close();
});

test('uploads wait for the write delay, so pieces of one block cost one PUT; a flush does not wait', async (t) => {
  const { openDb, make } = await setup(t, { writeDelayMs: 300 });
  const inner = new MemoryBlockStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  const piece = BS / 8;
  const block = Buffer.alloc(BS);
  for (let k = 0; k < 8; k++) {
    block.fill(k + 1, k * piece, (k + 1) * piece);
    await cache.writeRange(0, k * piece, Buffer.alloc(piece, k + 1), piece);
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(inner.stats.write, 0, 'nothing uploaded before the delay');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(inner.stats.write, 1, 'one upload for eight writes');
  assert.deepEqual(inner.blocks.get(0), block);
  await cache.writeRange(1, 0, randomBytes(BS / 2), BS / 2);
  const started = Date.now();
  await cache.flush();
  assert.ok(Date.now() - started < 250, 'flush uploads at once');
  assert.equal(inner.stats.write, 2);
  // A block written whole is complete: nothing more to coalesce, its upload starts at once.
  await cache.write(2, randomBytes(BS));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(inner.stats.write, 3, 'a whole-block write does not wait for the delay');
  await cache.close();
});

test('a complete block goes up at once even behind partial blocks still in their write delay', async (t) => {
  const { openDb, make } = await setup(t, { writeDelayMs: 1000 });
  const inner = new MemoryBlockStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  // ZFS's pattern: metadata pieces of some blocks (they wait), then a data block written whole.
  await cache.writeRange(3, 0, randomBytes(BS / 8), BS / 8);
  await cache.writeRange(4, BS / 4, randomBytes(BS / 8), BS / 8);
  const whole = randomBytes(BS);
  await cache.write(5, Buffer.from(whole));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(inner.stats.write, 1, 'only the complete block went up');
  assert.deepEqual(inner.blocks.get(5), whole);
  assert.equal(inner.blocks.get(3), undefined, 'the partial blocks still wait for more pieces');
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal(inner.stats.write, 3, 'and go up once their delay is over');
  await cache.close();
});

test('a read racing a zero write never leaves the old data behind', async (t) => {
  const { openDb, make } = await setup(t, { writeDelayMs: 0 });
  const inner = new MemoryBlockStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  for (let round = 0; round < 50; round++) {
    await cache.write(9, randomBytes(BS));
    await cache.read(1); // push nothing in particular; keep the hot set busy
    const zeroing = cache.write(9, null);
    const racing = cache.read(9); // not ordered with the write (as hydration is not)
    await Promise.all([zeroing, racing]);
    assert.equal(await cache.read(9), null, `round ${round}: the zero write wins`);
  }
  await cache.close();
});
