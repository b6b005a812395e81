// The overlay layer (src/store/overlay.ts) over a memory store standing in for the
// volume in S3, with a real LocalDb (LMDB) in a fresh folder per test.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { OverlayStore, OVERLAY_ZERO_MARKER } from '../../dist/store/overlay.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { sha256Raw } from '../../dist/store/checksum.js';
import { silentLogger } from '../../dist/log.js';

const BS = 16 * 1024;
const COUNT = 64;

interface Setup {
  dir: string;
  identity: { uuid: string; size: number; blockSize: number };
  db: LocalDb;
  /** The volume below, with some blocks already stored. */
  inner: MemoryBlockStore;
  below: Map<number, Buffer>;
  /** inner.stats.write once the volume below was filled. */
  innerWrites: number;
  store: OverlayStore;
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-overlay-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const s = { dir, identity, db: LocalDb.open(dir, identity) } as Setup;
  t.after(async () => {
    await s.db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  s.inner = new MemoryBlockStore(BS, COUNT);
  for (const i of [1, 2, 3, 10]) await s.inner.write(i, randomBytes(BS));
  s.below = snapshot(s.inner);
  s.innerWrites = s.inner.stats.write;
  s.store = new OverlayStore({}, s.inner, { log: silentLogger, db: s.db });
  return s;
}

function snapshot(mem: MemoryBlockStore): Map<number, Buffer> {
  return new Map([...mem.blocks].map(([i, b]) => [i, Buffer.from(b)]));
}

/** Nothing that changes data ever reached the volume below. */
function assertUntouched(s: Setup): void {
  assert.equal(s.inner.stats.write, s.innerWrites, 'no write reached the store below');
  assert.equal(s.inner.stats.flush, 0, 'no flush reached the store below');
  assert.deepEqual(snapshot(s.inner), s.below);
}

describe('overlay: BlockStore basics', () => {
  test('reads back, zero writes, rewrites', async (t) => {
    const s = await setup(t);
    const { store } = s;
    assert.equal(store.blockSize, BS);
    assert.equal(store.blockCount, COUNT);
    assert.equal(await store.read(0), null);
    const a = randomBytes(BS);
    await store.write(0, Buffer.from(a));
    assert.deepEqual(await store.read(0), a);
    const b = randomBytes(BS);
    await store.write(0, Buffer.from(b));
    assert.deepEqual(await store.read(0), b);
    await store.write(0, Buffer.alloc(BS));
    assert.equal(await store.read(0), null);
    await store.write(5, Buffer.from(a));
    await store.write(5, null);
    assert.equal(await store.read(5), null);
    assertUntouched(s);
  });

  test('out of range indices and wrong sizes are refused', async (t) => {
    const { store } = await setup(t);
    await assert.rejects(store.read(COUNT), { code: 'ERANGE' });
    await assert.rejects(store.read(-1), { code: 'ERANGE' });
    await assert.rejects(store.read(2.5), { code: 'ERANGE' });
    await assert.rejects(store.write(COUNT, null), { code: 'ERANGE' });
    await assert.rejects(store.write(0, Buffer.alloc(BS - 1, 1)), { code: 'ERANGE' });
    assert.equal(store.stats.blocks, 0);
  });

  test('flush resolves; after close every call is refused and the store below is closed', async (t) => {
    const s = await setup(t);
    await s.store.write(1, randomBytes(BS));
    await s.store.flush();
    await s.store.close();
    await assert.rejects(s.store.read(1), { code: 'ECLOSED' });
    await assert.rejects(s.store.write(1, null), { code: 'ECLOSED' });
    await assert.rejects(s.store.flush(), { code: 'ECLOSED' });
    await assert.rejects(s.inner.read(1), { code: 'ECLOSED' });
    assertUntouched(s);
  });
});

describe('overlay: local writes over a volume that never changes', () => {
  test('untouched blocks come from below; writes, zero writes and trims hide what is below', async (t) => {
    const s = await setup(t);
    const { store, inner } = s;
    assert.deepEqual(await store.read(1), s.below.get(1));
    assert.equal(await store.read(4), null);
    const reads = inner.stats.read;
    const a = randomBytes(BS);
    await store.write(1, Buffer.from(a));
    await store.write(2, Buffer.alloc(BS));
    await store.write(3, null);
    await store.write(4, Buffer.from(a));
    assert.deepEqual(await store.read(1), a);
    assert.equal(await store.read(2), null, 'a zero write hides the data below');
    assert.equal(await store.read(3), null, 'a trim hides the data below');
    assert.deepEqual(await store.read(4), a);
    assert.equal(inner.stats.read, reads, 'overlay blocks are not read from below');
    assert.deepEqual(await store.read(10), s.below.get(10));
    await store.flush();
    assertUntouched(s);
  });

  test('a write resolves only once its entry is in LMDB', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    await s.store.write(7, Buffer.from(a));
    const entry = s.db.overlay.get(7);
    assert.ok(entry);
    assert.deepEqual(Buffer.from(entry).subarray(32), a);
    assert.deepEqual(Buffer.from(entry).subarray(0, 32), sha256Raw(a));
    await s.store.write(8, null);
    assert.deepEqual(Buffer.from(s.db.overlay.get(8)!), OVERLAY_ZERO_MARKER);
  });

  test('concurrent writes: the last one wins and the count stays right', async (t) => {
    const s = await setup(t);
    const versions = Array.from({ length: 5 }, () => randomBytes(BS));
    await Promise.all(versions.map((v) => s.store.write(9, Buffer.from(v))));
    assert.deepEqual(await s.store.read(9), versions[4]);
    assert.equal(s.store.stats.blocks, 1);
    assertUntouched(s);
  });

  test('writes persist across a close and reopen of the local database', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    const b = randomBytes(BS);
    await s.store.write(1, Buffer.from(a));
    await s.store.write(2, null);
    await s.store.write(20, Buffer.from(b));
    await s.store.close();
    await s.db.close();
    assertUntouched(s);

    s.db = LocalDb.open(s.dir, s.identity);
    const inner = new MemoryBlockStore(BS, COUNT);
    for (const [i, data] of s.below) await inner.write(i, Buffer.from(data));
    const store = new OverlayStore({}, inner, { log: silentLogger, db: s.db });
    assert.equal(store.stats.blocks, 3, 'the count is loaded from LMDB');
    assert.equal(store.stats.bytes, 3 * BS);
    assert.deepEqual(await store.read(1), a);
    assert.equal(await store.read(2), null);
    assert.deepEqual(await store.read(20), b);
    assert.deepEqual(await store.read(3), s.below.get(3));
    const innerWrites = inner.stats.write;
    await store.write(5, randomBytes(BS));
    await store.close();
    assert.equal(inner.stats.write, innerWrites);
  });

  test('a corrupt overlay entry is ECORRUPT, never the data below', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    await s.store.write(1, Buffer.from(a));
    await s.store.write(2, Buffer.from(a));
    await s.store.write(3, null);
    const flipped = Buffer.from(s.db.overlay.get(1)!);
    flipped.writeUInt8(flipped.readUInt8(100) ^ 1, 100);
    s.db.overlay.putSync(1, flipped);
    s.db.overlay.putSync(2, Buffer.from(s.db.overlay.get(2)!).subarray(0, 32 + BS - 1));
    const badMarker = Buffer.alloc(32);
    badMarker[31] = 1;
    s.db.overlay.putSync(3, badMarker);
    await assert.rejects(s.store.read(1), { code: 'ECORRUPT' });
    await assert.rejects(s.store.read(2), { code: 'ECORRUPT' });
    await assert.rejects(s.store.read(3), { code: 'ECORRUPT' });
    assert.equal(s.store.stats.corrupt, 3);
    // Rewriting the block repairs it.
    await s.store.write(1, Buffer.from(a));
    assert.deepEqual(await s.store.read(1), a);
  });

  test('stats count overlay entries, zeroed ones included, and reads answered locally', async (t) => {
    const s = await setup(t);
    const { store } = s;
    assert.deepEqual(store.stats, { blocks: 0, bytes: 0, hits: 0, corrupt: 0 });
    await store.write(0, randomBytes(BS));
    await store.write(1, null);
    await store.write(0, randomBytes(BS)); // a rewrite adds nothing
    await store.write(2, Buffer.alloc(BS));
    assert.equal(store.stats.blocks, 3);
    assert.equal(store.stats.bytes, 3 * BS);
    assert.equal(s.db.overlay.getCount(), 3);
    await store.read(0);
    await store.read(1);
    await store.read(10);
    assert.equal(store.stats.hits, 2);
    await assert.rejects(store.write(COUNT, null));
    assert.equal(store.stats.blocks, 3);
  });
});
