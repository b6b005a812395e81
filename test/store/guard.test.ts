// Guard layer (src/store/guard.ts): stale reads after a write or delete are retried
// and never passed up; writes of one block never overlap below; expectations
// survive a restart and expire after their window.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { GuardStore, type GuardConfig } from '../../dist/store/guard.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import { S3zError } from '../../dist/errors.js';
import type { BlockStore, ReadOptions } from '../../dist/store/types.js';

const BS = 4096;
const COUNT = 64;
const FAST: GuardConfig = { retries: 4, minDelayMs: 1, maxDelayMs: 5, maxTotalMs: 5000 };

interface Volume {
  dir: string;
  uuid: string;
}

async function volume(t: TestContext): Promise<Volume> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-guard-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { dir, uuid: randomUUID() };
}

function openDb(t: TestContext, v: Volume): LocalDb {
  const db = LocalDb.open(v.dir, { uuid: v.uuid, size: BS * COUNT, blockSize: BS });
  t.after(() => db.close());
  return db;
}

function guard(db: LocalDb, inner: BlockStore, config: GuardConfig = FAST, now?: () => number): GuardStore {
  return new GuardStore(config, inner, now === undefined ? { db, log: silentLogger } : { db, log: silentLogger, now });
}

/**
 * An eventually consistent store: after each write, the next `lag` reads of that
 * block return the version it replaced (Infinity: forever).
 */
class LaggingStore implements BlockStore {
  readonly blockSize = BS;
  readonly blockCount = COUNT;
  readonly mem = new MemoryBlockStore(BS, COUNT);
  readonly previous = new Map<number, Buffer | null>();
  readonly lagLeft = new Map<number, number>();
  readonly returned: (Buffer | null)[] = [];
  reads = 0;
  constructor(public lag: number) {}
  async read(i: number, o?: ReadOptions): Promise<Buffer | null> {
    this.reads++;
    const left = this.lagLeft.get(i) ?? 0;
    let out: Buffer | null;
    if (left > 0) {
      this.lagLeft.set(i, left - 1);
      const old = this.previous.get(i) ?? null;
      out = old === null ? null : Buffer.from(old);
    } else {
      out = await this.mem.read(i, o);
    }
    this.returned.push(out);
    return out;
  }
  async write(i: number, d: Buffer | null): Promise<void> {
    this.previous.set(i, await this.mem.read(i));
    await this.mem.write(i, d);
    this.lagLeft.set(i, this.lag);
  }
  flush() {
    return this.mem.flush();
  }
  close() {
    return this.mem.close();
  }
}

test('a read that is stale for a few attempts is retried and returns the new data', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new LaggingStore(3);
  const g = guard(db, below);
  const v1 = randomBytes(BS);
  const v2 = randomBytes(BS);
  await g.write(1, Buffer.from(v1));
  below.lagLeft.set(1, 0);
  assert.deepEqual(await g.read(1), v1);
  await g.write(1, Buffer.from(v2));
  const before = below.reads;
  assert.deepEqual(await g.read(1), v2);
  assert.equal(below.reads - before, 4, 'three stale answers, then the new one');
  assert.equal(g.stats.stale, 3);
  assert.equal(g.stats.guarded, 1);
  await g.close();
});

test('a block that stays stale fails with ESTALE and never returns the old data', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new LaggingStore(0);
  const g = guard(db, below);
  const v1 = randomBytes(BS);
  await g.write(2, Buffer.from(v1));
  below.lag = Infinity;
  await g.write(2, randomBytes(BS));
  await assert.rejects(g.read(2), { code: 'ESTALE', errno: 5 });
  assert.equal(g.stats.stale, 1 + FAST.retries!, 'every attempt was stale');
  assert.ok(below.returned.some((b) => b !== null && b.equals(v1)), 'the store below did return the old data');
  await g.close();
});

test('an object still present after a zero write is stale: the read gives null', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new LaggingStore(0);
  const g = guard(db, below);
  await g.write(3, randomBytes(BS));
  below.lag = 2;
  await g.write(3, Buffer.alloc(BS));
  assert.equal(await g.read(3), null);
  assert.equal(g.stats.stale, 2);
  // And a delete that never shows is an error, not the old bytes.
  below.lag = Infinity;
  await g.write(4, randomBytes(BS));
  await g.write(4, null);
  await assert.rejects(g.read(4), { code: 'ESTALE' });
  await g.close();
});

test('blocks never written are read without checks', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new LaggingStore(Infinity);
  const g = guard(db, below);
  below.mem.blocks.set(9, Buffer.alloc(BS, 9)); // as if written by an earlier mount, long ago
  assert.deepEqual(await g.read(9), Buffer.alloc(BS, 9));
  assert.equal(g.stats.stale, 0);
  assert.equal(g.stats.guarded, 0);
  await g.close();
});

/** Slow writes that record overlap and order. */
class SlowStore implements BlockStore {
  readonly blockSize = BS;
  readonly blockCount = COUNT;
  readonly mem = new MemoryBlockStore(BS, COUNT);
  readonly active = new Map<number, number>();
  readonly events: string[] = [];
  overlap = 0;
  async read(i: number, o?: ReadOptions) {
    this.events.push(`read ${i}`);
    return this.mem.read(i, o);
  }
  async write(i: number, d: Buffer | null) {
    const n = (this.active.get(i) ?? 0) + 1;
    this.active.set(i, n);
    if (n > 1) this.overlap++;
    this.events.push(`write ${i} ${d === null ? 'null' : d[0]}`);
    await new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
    await this.mem.write(i, d);
    this.active.set(i, (this.active.get(i) ?? 1) - 1);
    this.events.push(`done ${i}`);
  }
  flush() {
    return this.mem.flush();
  }
  close() {
    return this.mem.close();
  }
}

test('concurrent writes of one block never overlap below; the last one wins', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new SlowStore();
  const g = guard(db, below);
  const writes: Promise<void>[] = [];
  for (let n = 1; n <= 10; n++) writes.push(g.write(0, Buffer.alloc(BS, n)));
  for (let n = 1; n <= 5; n++) writes.push(g.write(1, Buffer.alloc(BS, n)));
  await Promise.all(writes);
  assert.equal(below.overlap, 0, 'no two writes of one block in flight at once');
  const order = below.events.filter((e) => e.startsWith('write 0')).map((e) => Number(e.split(' ')[2]));
  assert.deepEqual(order, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'in the order they were made');
  assert.ok(
    below.events.indexOf('write 1 1') < below.events.indexOf('write 0 10'),
    'other blocks are not held up by block 0',
  );
  assert.deepEqual(await g.read(0), Buffer.alloc(BS, 10));
  assert.deepEqual(await g.read(1), Buffer.alloc(BS, 5));
  assert.equal(g.stats.stale, 0);
  await g.close();
});

test('a failed write does not stop the next write of the block', async (t) => {
  const db = openDb(t, await volume(t));
  const mem = new MemoryBlockStore(BS, COUNT);
  let fail = true;
  const below: BlockStore = {
    blockSize: BS,
    blockCount: COUNT,
    read: (i, o) => mem.read(i, o),
    write: async (i, d) => {
      if (fail) {
        fail = false;
        throw new Error('injected');
      }
      return mem.write(i, d);
    },
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  const g = guard(db, below);
  const first = g.write(5, Buffer.alloc(BS, 1));
  const second = g.write(5, Buffer.alloc(BS, 2));
  await assert.rejects(first, /injected/);
  await second;
  assert.deepEqual(await g.read(5), Buffer.alloc(BS, 2));
  await g.close();
});

test('a read waits for the write of its block in flight', async (t) => {
  const db = openDb(t, await volume(t));
  const below = new SlowStore();
  const g = guard(db, below);
  await g.write(2, Buffer.alloc(BS, 1));
  const w = g.write(2, Buffer.alloc(BS, 2));
  const r = g.read(2);
  assert.deepEqual(await r, Buffer.alloc(BS, 2));
  await w;
  const e = below.events;
  assert.ok(e.lastIndexOf('done 2') < e.lastIndexOf('read 2'), `read after the write finished: ${e.join(', ')}`);
  assert.equal(g.stats.stale, 0, 'no stale attempt was needed');
  await g.close();
});

test('the expectation is in LMDB before the write goes below', async (t) => {
  const db = openDb(t, await volume(t));
  const mem = new MemoryBlockStore(BS, COUNT);
  let seen: unknown;
  const below: BlockStore = {
    blockSize: BS,
    blockCount: COUNT,
    read: (i, o) => mem.read(i, o),
    write: async (i, d) => {
      seen = db.guard.get(i); // reads committed data only
      return mem.write(i, d);
    },
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  const g = guard(db, below, { ...FAST, windowMs: 1000 }, () => 5000);
  await g.write(6, null);
  assert.deepEqual(seen, { sum: null, until: 6100 }, 'the window, and a tenth of it for the upload');
  await g.write(6, Buffer.alloc(BS, 1));
  assert.match((seen as unknown as { sum: string }).sum, /^[A-Za-z0-9+/]{43}=$/);
  await g.close();
});

test('expectations survive a reopen of the LocalDb', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  const below = new LaggingStore(0);
  const g1 = guard(db, below);
  await g1.write(7, randomBytes(BS));
  const v2 = randomBytes(BS);
  await g1.write(7, Buffer.from(v2));
  await g1.close();
  await db.close();

  db = openDb(t, v);
  // A new process; S3 still serves the version before the last write.
  const stale = new LaggingStore(0);
  stale.mem.blocks.set(7, below.previous.get(7)!);
  const g2 = guard(db, stale);
  assert.equal(g2.stats.guarded, 1, 'restored');
  await assert.rejects(g2.read(7), { code: 'ESTALE' });
  stale.mem.blocks.set(7, Buffer.from(v2)); // consistency reached
  assert.deepEqual(await g2.read(7), v2);
  await g2.close();
});

test('expectations expire after the window and are purged from memory and LMDB', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  let now = 1_000_000;
  const clock = () => now;
  const below = new LaggingStore(0);
  const g = guard(db, below, { ...FAST, windowMs: 1000 }, clock);
  const v1 = randomBytes(BS);
  await g.write(8, Buffer.from(v1));
  await g.write(8, randomBytes(BS));
  now += 500;
  await g.write(9, randomBytes(BS));
  below.lag = Infinity;
  below.lagLeft.set(8, Infinity);
  now += 600; // block 8's window (ends at +1100: +1000 and a tenth for the upload) is over, block 9's (+1600) is not
  assert.deepEqual(await g.read(8), v1, 'past the window, what S3 says is taken');
  assert.equal(g.purge(), 1);
  assert.equal(g.stats.guarded, 1);
  await db.committed();
  assert.equal(db.guard.get(8), undefined, 'removed from LMDB');
  assert.ok(db.guard.get(9), 'a live one stays');
  await g.close();
  await db.close();

  // Reopened after block 9's window too: nothing is restored, and LMDB is cleaned.
  now += 1000;
  db = openDb(t, v);
  const g2 = guard(db, below, { ...FAST, windowMs: 1000 }, clock);
  assert.equal(g2.stats.guarded, 0);
  await db.committed();
  assert.equal(db.guard.getCount(), 0);
  await g2.close();
});

test('the window is counted from the end of the write; a fast upload commits its expectation once', async (t) => {
  const db = openDb(t, await volume(t));
  let now = 0;
  const mem = new MemoryBlockStore(BS, COUNT);
  const below: BlockStore = {
    blockSize: BS,
    blockCount: COUNT,
    read: (i, o) => mem.read(i, o),
    write: async (i, d) => {
      now += 5000; // a slow upload
      return mem.write(i, d);
    },
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  const g = guard(db, below, { ...FAST, windowMs: 1000 }, () => now);
  await g.write(1, Buffer.alloc(BS, 1));
  await db.committed();
  assert.equal(db.guard.get(1)?.until, 6000, 'committed again after the slow upload: 1000 ms past its end');
  mem.blocks.delete(1); // S3 "loses" it: stale
  now += 500;
  await assert.rejects(g.read(1), { code: 'ESTALE' }, 'still guarded 500 ms after the upload ended');
  now += 499;
  await assert.rejects(g.read(1), { code: 'ESTALE' }, 'and 999 ms after');

  // An upload within the tenth of the window: one commit, whose window already covers it.
  const puts: unknown[] = [];
  const put = db.guard.put.bind(db.guard);
  db.guard.put = ((k: number, v: unknown) => (puts.push(v), put(k, v as never))) as typeof db.guard.put;
  const fast = guard(db, mem, { ...FAST, windowMs: 1000 }, () => now);
  await fast.write(2, Buffer.alloc(BS, 2));
  assert.deepEqual(puts.map((p) => (p as { until: number }).until), [now + 1100]);
  await fast.close();
  await g.close();
});

test('contract basics over a memory store', async (t) => {
  const db = openDb(t, await volume(t));
  const mem = new MemoryBlockStore(BS, COUNT);
  const g = guard(db, mem);
  assert.equal(g.blockSize, BS);
  assert.equal(g.blockCount, COUNT);
  assert.equal(await g.read(0), null);
  const a = randomBytes(BS);
  await g.write(3, Buffer.from(a));
  assert.deepEqual(await g.read(3), a);
  const b = randomBytes(BS);
  await g.write(3, Buffer.from(b));
  assert.deepEqual(await g.read(3), b);
  await g.write(3, Buffer.alloc(BS));
  assert.equal(await g.read(3), null);
  await g.write(4, null);
  assert.equal(await g.read(4), null);
  await assert.rejects(g.read(COUNT), { code: 'ERANGE' });
  await assert.rejects(g.read(-1), { code: 'ERANGE' });
  await assert.rejects(g.read(1.5), { code: 'ERANGE' });
  await assert.rejects(g.write(0, Buffer.alloc(BS - 1, 1)), { code: 'ERANGE' });
  await g.flush();
  assert.equal(mem.stats.flush, 1);
  await g.close();
  await assert.rejects(g.read(1), { code: 'ECLOSED' });
  await assert.rejects(g.write(1, null), { code: 'ECLOSED' });
  await assert.rejects(g.flush(), { code: 'ECLOSED' });
  await assert.rejects(mem.read(1), { code: 'ECLOSED' });
});

test('a block just written that S3 reports missing (EMISSING) is a stale read: retried, not an error', async (t) => {
  const db = openDb(t, await volume(t));
  const mem = new MemoryBlockStore(BS, COUNT);
  let missing = 2;
  const below: BlockStore = {
    blockSize: BS,
    blockCount: COUNT,
    read: async (i, o) => {
      if (missing-- > 0) throw new S3zError('EMISSING', `block ${i}: no object`);
      return mem.read(i, o);
    },
    write: (i, d) => mem.write(i, d),
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  const g = guard(db, below);
  const data = randomBytes(BS);
  await g.write(3, Buffer.from(data));
  assert.deepEqual(await g.read(3), data);
  assert.equal(g.stats.stale, 2);
  // Without an expectation, a lost block stays an error.
  missing = 1;
  await assert.rejects(g.read(4), { code: 'EMISSING' });
  await g.close();
});
