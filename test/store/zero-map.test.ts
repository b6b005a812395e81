// Zero map layer (src/store/zero-map.ts) over a MemoryBlockStore: absent blocks
// cost no read below, the map follows writes, it loads from a listing or from the
// LMDB copy a clean close left, and it stays sparse on huge devices.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { ZeroMapStore, CHUNK_BITS, type ZeroMapSource } from '../../dist/store/zero-map.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { S3zError } from '../../dist/errors.js';
import { silentLogger } from '../../dist/log.js';
import type { BlockStore, ReadOptions } from '../../dist/store/types.js';

const BS = 4096;
const COUNT = 256;

interface Volume {
  dir: string;
  uuid: string;
  blockSize: number;
  blockCount: number;
}

async function volume(t: TestContext, blockSize = BS, blockCount = COUNT): Promise<Volume> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-zmap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { dir, uuid: randomUUID(), blockSize, blockCount };
}

/** Opens the volume's LocalDb, closed at the end of the test unless closed before. */
function openDb(t: TestContext, v: Volume): LocalDb {
  const db = LocalDb.open(v.dir, { uuid: v.uuid, size: v.blockSize * v.blockCount, blockSize: v.blockSize });
  t.after(() => db.close());
  return db;
}

function pages(...p: number[][]): ZeroMapSource['list'] {
  return async function* () {
    for (const page of p) yield page;
  };
}

const noList: ZeroMapSource['list'] = () => {
  throw new Error('the listing must not be used');
};

function make(db: LocalDb, inner: BlockStore, persistDelayMs = 60_000): ZeroMapStore {
  return new ZeroMapStore({ persistDelayMs }, inner, { db, log: silentLogger });
}

async function collect(it: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const i of it) out.push(i);
  return out;
}

function block(fill?: number): Buffer {
  return fill === undefined ? randomBytes(BS) : Buffer.alloc(BS, fill);
}

test('absent blocks are answered without a read below; stored ones are read', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  const data = block();
  mem.blocks.set(5, Buffer.from(data));
  const z = make(db, mem);
  await z.load({ token: undefined, list: pages([5]) });
  assert.equal(await z.read(4), null);
  assert.equal(await z.read(COUNT - 1), null);
  assert.equal(mem.stats.read, 0, 'no read below for absent blocks');
  assert.equal(z.stats.zeroReads, 2);
  assert.deepEqual(await z.read(5), data);
  assert.equal(mem.stats.read, 1);
  await z.close();
});

test('writes and zero writes keep the map current', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  const z = make(db, mem);
  await z.load({ token: undefined, list: pages() });
  const a = block();
  await z.write(10, Buffer.from(a));
  await z.write(11, block());
  assert.ok(z.has(10) && z.has(11));
  assert.equal(z.stats.stored, 2);
  assert.deepEqual(await z.read(10), a);
  await z.write(10, Buffer.alloc(BS)); // all zeros: a delete
  await z.write(11, null);
  assert.ok(!z.has(10) && !z.has(11));
  assert.equal(z.stats.stored, 0);
  assert.equal(z.stats.chunks, 0, 'an empty chunk is freed');
  assert.equal(mem.blocks.size, 0, 'zero writes reached the store below as deletes');
  const reads = mem.stats.read;
  assert.equal(await z.read(10), null);
  assert.equal(mem.stats.read, reads, 'a deleted block costs no read');
  await z.close();
});

test('loads from a listing of several pages', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z = make(db, new MemoryBlockStore(BS, COUNT));
  await z.load({ token: 'T1', list: pages([1, 2, 3], [40, 41], [200]) });
  assert.equal(z.stats.loadedFrom, 'list');
  assert.equal(z.stats.listPages, 3);
  assert.equal(z.stats.stored, 6);
  assert.deepEqual(await collect(z.storedIndices()), [1, 2, 3, 40, 41, 200]);
  assert.ok(!z.has(0) && !z.has(4) && !z.has(199));
  await z.close();
});

test('indices outside the device in a listing are ignored', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z = make(db, new MemoryBlockStore(BS, COUNT));
  await z.load({ token: undefined, list: pages([-1, 3, COUNT, COUNT + 5, 2.5]) });
  assert.deepEqual(await collect(z.storedIndices()), [3]);
  await z.close();
});

test('a clean close with a token lets the next load skip the listing', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  const z1 = make(db, new MemoryBlockStore(BS, COUNT));
  await z1.load({ token: 'T1', list: pages([1, 2], [100]) });
  await z1.write(2, null);
  await z1.write(150, block());
  z1.setToken('T2');
  await z1.close();
  await db.close();

  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'T2', list: noList });
  assert.equal(z2.stats.loadedFrom, 'cache');
  assert.equal(z2.stats.listPages, 0);
  assert.equal(z2.stats.stored, 3);
  assert.deepEqual(await collect(z2.storedIndices()), [1, 100, 150]);
  await z2.close();
});

test('without setToken a clean close records the token it was loaded with', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  const z1 = make(db, new MemoryBlockStore(BS, COUNT));
  await z1.load({ token: 'T1', list: pages([7]) });
  await z1.close();
  await db.close();
  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'T1', list: noList });
  assert.equal(z2.stats.loadedFrom, 'cache');
  assert.ok(z2.has(7));
  await z2.close();
});

test('after an unclean end the map is rebuilt from the listing, dropping the old copy', async (t) => {
  const n = 4 * CHUNK_BITS;
  const v = await volume(t, BS, n);
  let db = openDb(t, v);
  // A clean session first, so that a valid copy with token T1 exists.
  const z0 = make(db, new MemoryBlockStore(BS, n));
  await z0.load({ token: undefined, list: pages([1]) });
  z0.setToken('T1');
  await z0.close();
  // Then a session that dies: it loads from the copy and writes (flushed to LMDB), never closes.
  const z1 = make(db, new MemoryBlockStore(BS, n));
  await z1.load({ token: 'T1', list: noList });
  assert.equal(z1.stats.loadedFrom, 'cache');
  await z1.write(5, block());
  await z1.write(2 * CHUNK_BITS + 5, block()); // a chunk the listing below does not touch
  await z1.flush();
  assert.ok(db.zmap.get(2), 'chunk 2 was written to LMDB');
  await db.close();

  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, n));
  let listed = 0;
  await z2.load({
    token: 'T1',
    list: async function* () {
      listed++;
      yield [9];
    },
  });
  assert.equal(listed, 1, 'the listing was used');
  assert.equal(z2.stats.loadedFrom, 'list');
  assert.deepEqual(await collect(z2.storedIndices()), [9], 'only what the listing says');
  await z2.close();
  await db.close();

  // The rebuilt copy replaced the old one entirely: no bit of it comes back.
  db = openDb(t, v);
  const z3 = make(db, new MemoryBlockStore(BS, n));
  await z3.load({ token: 'T1', list: noList });
  assert.equal(z3.stats.loadedFrom, 'cache');
  assert.deepEqual(await collect(z3.storedIndices()), [9]);
  await z3.close();
});

test('a different token, or none, means a listing', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  const z1 = make(db, new MemoryBlockStore(BS, COUNT));
  await z1.load({ token: 'T1', list: pages([1]) });
  await z1.close();
  await db.close();

  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'OTHER', list: pages([2]) });
  assert.equal(z2.stats.loadedFrom, 'list');
  assert.deepEqual(await collect(z2.storedIndices()), [2]);
  z2.setToken(undefined);
  await z2.close();
  await db.close();

  db = openDb(t, v);
  const z3 = make(db, new MemoryBlockStore(BS, COUNT));
  await z3.load({ token: undefined, list: pages([3]) });
  assert.equal(z3.stats.loadedFrom, 'list', 'no token: never reuse');
  await z3.close();
});

test('the LMDB copy is marked unclean as soon as load resolves', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z1 = make(db, new MemoryBlockStore(BS, COUNT));
  await z1.load({ token: 'T1', list: pages([1]) });
  await z1.close();
  assert.deepEqual(db.meta.get('zmap'), { clean: true, token: 'T1', blockCount: COUNT, chunkBits: CHUNK_BITS });
  const z2 = make(db, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'T1', list: noList });
  assert.equal((db.meta.get('zmap') as { clean: boolean }).clean, false);
  await z2.close();
});

test('changed chunks are saved lazily, after the delay, not at each write', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z = make(db, new MemoryBlockStore(BS, COUNT), 50);
  await z.load({ token: undefined, list: pages() });
  await z.write(3, block());
  await db.committed();
  assert.equal(db.zmap.get(0), undefined, 'not saved at once');
  const deadline = Date.now() + 5000;
  while (db.zmap.get(0) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const saved = db.zmap.get(0);
  assert.ok(saved, 'saved after the delay');
  assert.equal(saved[0], 1 << 3);
  await z.write(3, null);
  await z.flush();
  assert.equal(db.zmap.get(0), undefined, 'flush saves at once; an empty chunk is removed');
  await z.close();
});

test('memory stays sparse on a huge device', async (t) => {
  const count = 2 ** 40; // 4 PiB of 4 KiB blocks
  const v = await volume(t, BS, count);
  let db = openDb(t, v);
  const far = [0, 2 ** 20 + 3, 2 ** 39, count - 1];
  const z1 = make(db, new MemoryBlockStore(BS, count));
  await z1.load({ token: undefined, list: pages([far[1]!, far[3]!]) });
  assert.equal(z1.stats.chunks, 2);
  await z1.write(far[0]!, block(1));
  await z1.write(far[2]!, block(2));
  await z1.write(1, block(3)); // same chunk as block 0
  assert.equal(z1.stats.chunks, 4, 'one chunk per region that holds a block');
  assert.equal(z1.stats.stored, 5);
  assert.deepEqual(await collect(z1.storedIndices()), [0, 1, ...far.slice(1)]);
  assert.equal(await z1.read(2 ** 30), null);
  z1.setToken('T');
  await z1.close();
  await db.close();

  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, count));
  await z2.load({ token: 'T', list: noList });
  assert.equal(z2.stats.chunks, 4);
  assert.deepEqual(await collect(z2.storedIndices()), [0, 1, ...far.slice(1)]);
  await z2.close();
});

/** A store below whose writes fail on demand. */
class FailingStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  fail = false;
  constructor(readonly inner: MemoryBlockStore) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
  }
  read(i: number, o?: ReadOptions) {
    return this.inner.read(i, o);
  }
  async write(i: number, d: Buffer | null) {
    if (this.fail) throw new S3zError('ES3', 'injected failure');
    return this.inner.write(i, d);
  }
  flush() {
    return this.inner.flush();
  }
  close() {
    return this.inner.close();
  }
}

test('a failed write below leaves the bit set: a failed PUT and a failed DELETE', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  const below = new FailingStore(mem);
  const z = make(db, below);
  await z.load({ token: undefined, list: pages() });
  const old = block();
  await z.write(1, Buffer.from(old));
  below.fail = true;
  await assert.rejects(z.write(1, null), { code: 'ES3' });
  assert.ok(z.has(1), 'the delete may not have happened: the bit is set again');
  assert.deepEqual(await z.read(1), old, 'the object is still found');
  await assert.rejects(z.write(2, block()), { code: 'ES3' });
  assert.ok(z.has(2), 'the PUT may have happened: the bit stays set');
  assert.equal(await z.read(2), null, 'a set bit only costs a read that finds nothing');
  await z.close();
});

test('a read racing a delete sees zeros; a read racing a PUT asks below', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow: BlockStore = {
    blockSize: BS,
    blockCount: COUNT,
    read: (i, o) => mem.read(i, o),
    write: async (i, d) => {
      await gate;
      return mem.write(i, d);
    },
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  mem.blocks.set(4, block(7));
  const z = make(db, slow);
  await z.load({ token: undefined, list: pages([4]) });
  const del = z.write(4, null);
  assert.equal(await z.read(4), null, 'zeros while the delete is in flight');
  const put = z.write(5, block(9));
  assert.ok(z.has(5));
  release();
  await Promise.all([del, put]);
  assert.deepEqual(await z.read(5), block(9));
  await z.close();
});

test('refuses use before load, and a second load', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z = make(db, new MemoryBlockStore(BS, COUNT));
  await assert.rejects(z.read(0), /before load/);
  await assert.rejects(z.write(0, null), /before load/);
  await z.load({ token: undefined, list: pages() });
  await assert.rejects(z.load({ token: undefined, list: pages() }), /twice/);
  await z.close();
});

test('a failed listing leaves the store unloaded; load may be tried again', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const z = make(db, new MemoryBlockStore(BS, COUNT));
  await assert.rejects(
    z.load({
      token: undefined,
      list: async function* () {
        yield [1];
        throw new Error('LIST failed');
      },
    }),
    /LIST failed/,
  );
  assert.equal(z.stats.stored, 0);
  await assert.rejects(z.read(1), /before load/);
  await z.load({ token: undefined, list: pages([2]) });
  assert.deepEqual(await collect(z.storedIndices()), [2]);
  await z.close();
});

test('contract basics over a memory store', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  const z = make(db, mem);
  await z.load({ token: undefined, list: pages() });
  assert.equal(z.blockSize, BS);
  assert.equal(z.blockCount, COUNT);
  assert.equal(await z.read(0), null);
  const a = block();
  await z.write(3, Buffer.from(a));
  assert.deepEqual(await z.read(3), a);
  const b = block();
  await z.write(3, Buffer.from(b));
  assert.deepEqual(await z.read(3), b, 'a rewrite replaces the block');
  await z.write(3, Buffer.alloc(BS));
  assert.equal(await z.read(3), null);
  await assert.rejects(z.read(COUNT), { code: 'ERANGE' });
  await assert.rejects(z.read(-1), { code: 'ERANGE' });
  await assert.rejects(z.read(1.5), { code: 'ERANGE' });
  await assert.rejects(z.write(0, Buffer.alloc(BS - 1, 1)), { code: 'ERANGE' });
  await z.write(1, block());
  await z.flush();
  assert.equal(mem.stats.flush, 1, 'flush reaches the store below');
  await z.close();
  await assert.rejects(z.read(1), { code: 'ECLOSED' });
  await assert.rejects(z.write(1, null), { code: 'ECLOSED' });
  await assert.rejects(z.flush(), { code: 'ECLOSED' });
  await assert.rejects(mem.read(1), { code: 'ECLOSED' }, 'close closes the store below');
});

test('a set bit whose object is gone is EMISSING (EIO), never zeros; a later successful write clears the doubt of a failed one', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  mem.blocks.set(7, block());
  mem.blocks.set(8, block());
  const below = new FailingStore(mem);
  const z = make(db, below);
  await z.load({ token: undefined, list: pages([7, 8]) });
  mem.blocks.delete(7); // deleted behind the mount's back (a lifecycle rule, an erase)
  await assert.rejects(z.read(7), (err: unknown) => err instanceof S3zError && err.code === 'EMISSING' && err.errno === 5 && /block 7/.test(err.message));
  assert.equal(z.stats.missing, 1);
  // A failed PUT of a never-stored block: S3 may or may not hold it, so no object is no error...
  below.fail = true;
  await assert.rejects(z.write(9, block()), { code: 'ES3' });
  below.fail = false;
  assert.equal(await z.read(9), null);
  // ...until a write of it succeeds: then a lost object is an error again.
  await z.write(9, block());
  mem.blocks.delete(9);
  await assert.rejects(z.read(9), { code: 'EMISSING' });
  await z.close();
});

/**
 * A LIST whose pages after the first come only when the test lets them (`release`), or
 * fail (`fail`); `calls` records the `after` of each listing started.
 */
function gatedList(all: number[][]): { list: ZeroMapSource['list']; release: () => void; fail: (err: Error) => void; calls: Array<number | undefined> } {
  const calls: Array<number | undefined> = [];
  let gate: { resolve: () => void; reject: (err: Error) => void } | undefined;
  const waiters: Array<() => void> = [];
  const list: ZeroMapSource['list'] = (after?: number) => {
    calls.push(after);
    const rest = all.map((p) => p.filter((i) => after === undefined || i > after)).filter((p) => p.length > 0);
    return (async function* () {
      for (let k = 0; k < rest.length; k++) {
        if (k > 0) {
          await new Promise<void>((resolve, reject) => {
            gate = { resolve, reject };
            for (const w of waiters.splice(0)) w();
          });
        }
        yield rest[k]!;
      }
    })();
  };
  const whenWaiting = (): Promise<void> => (gate !== undefined ? Promise.resolve() : new Promise((r) => waiters.push(r)));
  return {
    list,
    release: () => void whenWaiting().then(() => { const g = gate!; gate = undefined; g.resolve(); }),
    fail: (err) => void whenWaiting().then(() => { const g = gate!; gate = undefined; g.reject(err); }),
    calls,
  };
}

test('a load in the background serves after the first page: blocks not listed yet are asked below, a hole is zeros', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  const [a, b] = [block(), block()];
  mem.blocks.set(3, Buffer.from(a));
  mem.blocks.set(200, Buffer.from(b));
  const z = make(db, mem);
  const src = gatedList([[3], [200]]);
  await z.load({ token: 'T1', list: src.list }, { background: true });
  assert.equal(z.stats.listing, true);
  let listed = false;
  void z.listed.then(() => (listed = true));

  assert.equal(await z.read(2), null, 'below the frontier: a hole, known');
  assert.equal(mem.stats.read, 0);
  assert.deepEqual(await z.read(3), a);
  assert.deepEqual(await z.read(200), b, 'not listed yet, stored: read below');
  assert.equal(await z.read(150), null, 'not listed yet, absent: zeros, not EMISSING');
  assert.equal(z.stats.unlistedReads, 2);
  assert.equal(listed, false);

  src.release();
  await z.listed;
  assert.equal(z.stats.listing, false);
  assert.deepEqual(await collect(z.storedIndices()), [3, 200]);
  const reads = mem.stats.read;
  assert.equal(await z.read(150), null);
  assert.equal(mem.stats.read, reads, 'once listed, a hole costs no read');
  await z.close();
  await db.close();

  // Complete, so closed clean: the next mount with the token reuses it.
  const db2 = openDb(t, v);
  const z2 = make(db2, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'T1', list: noList }, { background: true });
  assert.equal(z2.stats.loadedFrom, 'cache');
  assert.deepEqual(await collect(z2.storedIndices()), [3, 200]);
  await z2.close();
});

test('writes during a background listing win over the pages that arrive after them', async (t) => {
  const v = await volume(t);
  const db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  mem.blocks.set(100, block());
  const z = make(db, mem);
  // The LIST saw block 100 stored and block 120 absent; this session then deletes 100 and writes 120.
  const src = gatedList([[1], [100, 130]]);
  mem.blocks.set(1, block());
  mem.blocks.set(130, block());
  await z.load({ token: undefined, list: src.list }, { background: true });
  await z.write(100, null);
  const c = block();
  await z.write(120, Buffer.from(c));
  src.release();
  await z.listed;
  assert.equal(z.has(100), false, 'deleted in this session: the older page does not bring it back');
  assert.equal(await z.read(100), null, 'zeros, not EMISSING');
  assert.deepEqual(await z.read(120), c);
  assert.deepEqual(await collect(z.storedIndices()), [1, 120, 130]);
  await z.close();
});

test('a failed page in the background is listed again after the last block applied; close() during a listing leaves the copy unclean', async (t) => {
  const v = await volume(t);
  let db = openDb(t, v);
  const mem = new MemoryBlockStore(BS, COUNT);
  for (const i of [5, 6, 90, 91, 250]) mem.blocks.set(i, block());
  const z = make(db, mem);
  const src = gatedList([[5, 6], [90, 91], [250]]);
  await z.load({ token: 'T1', list: src.list }, { background: true });
  src.fail(new Error('503 Slow Down'));
  await until('the listing to start again', () => src.calls.length === 2, 5000);
  assert.deepEqual(src.calls, [undefined, 6], 'again from after block 6');
  src.release();
  await until('page 2 applied', () => z.has(91), 5000);
  assert.equal(z.stats.listing, true);
  await z.close();
  await z.listed; // resolves on close too
  await db.close();

  db = openDb(t, v);
  const z2 = make(db, new MemoryBlockStore(BS, COUNT));
  await z2.load({ token: 'T1', list: pages([5, 6, 90, 91, 250]) });
  assert.equal(z2.stats.loadedFrom, 'list', 'an incomplete map is never reused');
  await z2.close();
});

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
