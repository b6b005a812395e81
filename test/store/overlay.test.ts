// The overlay layer (src/store/overlay.ts) over a memory store standing in for the
// volume in S3, with a real LocalDb (LMDB) and real overlay files in a fresh folder per test.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { OverlayStore, OVERLAY_LEGACY_ZERO, overlayDir, type OverlayDeps } from '../../dist/store/overlay.js';
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

/** The overlay file's bytes of block `index`. */
async function fileBlock(s: Setup, index: number): Promise<Buffer> {
  const all = await readFile(path.join(overlayDir(s.dir), 'slab-0'));
  return Buffer.concat([all.subarray(index * BS, (index + 1) * BS), Buffer.alloc(BS)]).subarray(0, BS);
}

/** Writes `bytes` into the overlay file at block `index`, offset `at` (a crash's leftovers, or a damaged disk). */
async function scribble(s: Setup, index: number, at: number, bytes: Buffer): Promise<void> {
  const f = await open(path.join(overlayDir(s.dir), 'slab-0'), 'r+');
  try {
    await f.write(bytes, 0, bytes.length, index * BS + at);
  } finally {
    await f.close();
  }
}

/**
 * Closes the store and its database, and opens both again over the same volume below, as
 * a new mount does; `crash`: the store is dropped without its close (which flushes), as
 * a kill -9 or a power cut leaves it.
 */
async function reopen(s: Setup, deps: Partial<OverlayDeps> = {}, crash = false): Promise<OverlayStore> {
  if (!crash) await s.store.close();
  await s.db.close();
  s.db = LocalDb.open(s.dir, s.identity);
  s.inner = new MemoryBlockStore(BS, COUNT);
  for (const [i, data] of s.below) await s.inner.write(i, Buffer.from(data));
  s.innerWrites = s.inner.stats.write;
  s.store = new OverlayStore({}, s.inner, { log: silentLogger, db: s.db, ...deps });
  return s.store;
}

/** The record kind byte of block `index` (4: written since the last flush, 2: flushed, 3: zeros). */
function kind(s: Setup, index: number): number | undefined {
  return s.db.overlay.get(index)?.[0];
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

  test('a write resolves once its bytes are in the overlay file and its small record in LMDB; flush marks it durable', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    await s.store.write(7, Buffer.from(a));
    assert.deepEqual(await fileBlock(s, 7), a, 'the data is in the file');
    const record = s.db.overlay.get(7);
    assert.ok(record);
    assert.ok(record.length < 100, `a record of CRCs, not the block (${record.length} bytes)`);
    assert.equal(kind(s, 7), 4, 'unflushed');
    // A commit resolves once visible; flush also waits until LMDB has synced it.
    let durableAsked = 0;
    const durable = s.db.durable.bind(s.db);
    s.db.durable = () => {
      durableAsked++;
      return durable();
    };
    await s.store.flush();
    assert.equal(kind(s, 7), 2, 'flushed');
    assert.equal(durableAsked, 1, 'the records are synced before flush resolves');
    await s.store.write(8, null);
    assert.equal(kind(s, 8), 3);
  });

  test('ranged writes and reads touch only their bytes; a first partial write builds on what is below', async (t) => {
    const s = await setup(t);
    const shadowed: number[] = [];
    s.store = new OverlayStore({}, s.inner, { log: silentLogger, db: s.db, shadow: (i) => shadowed.push(i) });
    const { store, inner } = s;
    const piece = randomBytes(4096);
    const reads = inner.stats.read;
    assert.equal(store.shadows(1), false);
    await store.writeRange(1, 8192, Buffer.from(piece), piece.length);
    assert.deepEqual(shadowed, [1], 'told before the first record');
    assert.equal(store.shadows(1), true);
    assert.equal(inner.stats.read, reads + 1, 'the block below was read once, as the base');
    const expected = Buffer.from(s.below.get(1)!);
    piece.copy(expected, 8192);
    assert.deepEqual(await store.read(1), expected);
    assert.deepEqual(await store.readRange(1, 8192, 4096), piece);
    assert.deepEqual(await store.readRange(1, 0, 100), s.below.get(1)!.subarray(0, 100));
    // A second partial write neither reads below nor tells the shadow again.
    const more = randomBytes(100);
    await store.writeRange(1, 10, Buffer.from(more), more.length);
    more.copy(expected, 10);
    assert.deepEqual(await store.read(1), expected);
    assert.equal(inner.stats.read, reads + 1);
    assert.deepEqual(shadowed, [1]);
    // A trim of a range is zeros there; a partial write over a zeroed block starts from zeros.
    await store.writeRange(1, 0, null, 4096);
    expected.fill(0, 0, 4096);
    assert.deepEqual(await store.read(1), expected);
    await store.write(2, null);
    await store.writeRange(2, 100, Buffer.from(piece), piece.length);
    const two = Buffer.alloc(BS);
    piece.copy(two, 100);
    assert.deepEqual(await store.read(2), two);
    await assert.rejects(store.readRange(1, BS - 10, 11), { code: 'ERANGE' });
    await assert.rejects(store.writeRange(1, 0, null, 0), { code: 'ERANGE' });
    assertUntouched(s);
    // All of it is checked and kept across a reopen.
    await reopen(s);
    assert.deepEqual(await s.store.read(1), expected);
    assert.deepEqual(await s.store.read(2), two);
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
    s.store = store;
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

  test('after a crash of the process the file is authoritative: a write that was not acknowledged may be there', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    await s.store.write(1, Buffer.from(a));
    await s.store.flush();
    await reopen(s, { rebooted: false });
    // What a kill -9 between a write's bytes and its record leaves.
    const late = randomBytes(64);
    await scribble(s, 1, 500, late);
    late.copy(a, 500);
    assert.deepEqual(await s.store.read(1), a);
    assert.equal(s.store.stats.corrupt, 0);
    assert.equal(kind(s, 1), 4, 'its record rewritten from the file, as not yet flushed');
  });

  test('after a reboot, a block that differs from its record is ECORRUPT unless it was written since its last flush', async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    await s.store.write(1, Buffer.from(a));
    await s.store.write(2, Buffer.from(a));
    await s.store.flush();
    await s.store.writeRange(3, 0, Buffer.from(a.subarray(0, 4096)), 4096); // not flushed
    // The power goes: block 3's last write was never flushed.
    await reopen(s, { rebooted: true }, true);
    assert.equal(kind(s, 3), 4);
    await scribble(s, 1, 100, Buffer.from([a[100]! ^ 1]));
    await scribble(s, 3, 0, Buffer.alloc(4096)); // its unflushed write was lost
    await assert.rejects(s.store.read(1), { code: 'ECORRUPT' }, 'never the data below');
    assert.deepEqual(await s.store.read(2), a);
    const three = Buffer.from(s.below.get(3)!);
    three.fill(0, 0, 4096);
    assert.deepEqual(await s.store.read(3), three, 'what reached the disk');
    assert.equal(s.store.stats.corrupt, 1);
    await assert.rejects(s.store.writeRange(1, 0, Buffer.alloc(10, 1), 10), { code: 'ECORRUPT' }, 'no partial write on a corrupt base');
    // Rewriting the whole block repairs it.
    await s.store.write(1, Buffer.from(a));
    assert.deepEqual(await s.store.read(1), a);
    // A record this build does not know is ECORRUPT too, even one of a dirty record's length.
    s.db.overlay.putSync(2, Buffer.from([9, 9]));
    s.db.overlay.putSync(3, Buffer.from([9, 0, 0, 0, 0]));
    await reopen(s, { rebooted: false });
    await assert.rejects(s.store.read(2), { code: 'ECORRUPT' });
    await assert.rejects(s.store.read(3), { code: 'ECORRUPT' });
  });

  test("an earlier build's records (a CRC-32 per 64 KiB, here one per block) are checked as written after a reboot", async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    const b = randomBytes(BS);
    await s.store.write(1, Buffer.from(a));
    await s.store.write(2, Buffer.from(b));
    await s.store.flush();
    const old = (data: Buffer): Buffer => {
      const r = Buffer.alloc(5);
      r[0] = 2;
      r.writeUInt32BE(crc32(data), 1);
      return r;
    };
    s.db.overlay.putSync(1, old(a));
    s.db.overlay.putSync(2, old(b));
    await reopen(s, { rebooted: true });
    await scribble(s, 2, 100, Buffer.from([b[100]! ^ 1]));
    assert.deepEqual(await s.store.read(1), a);
    await assert.rejects(s.store.read(2), { code: 'ECORRUPT' }, 'a damaged block is still refused');
    assert.equal(s.store.stats.corrupt, 1);
  });

  test("an earlier build's overlay entries (the whole block in LMDB) are checked, then moved into the file", async (t) => {
    const s = await setup(t);
    const a = randomBytes(BS);
    s.db.overlay.putSync(1, Buffer.concat([sha256Raw(a), a]));
    s.db.overlay.putSync(2, OVERLAY_LEGACY_ZERO);
    const bad = Buffer.concat([sha256Raw(a), a]);
    bad[40] = bad[40]! ^ 1;
    s.db.overlay.putSync(3, bad);
    const badMarker = Buffer.alloc(32);
    badMarker[31] = 1;
    s.db.overlay.putSync(4, badMarker);
    await reopen(s);
    assert.equal(s.store.stats.blocks, 4);
    assert.deepEqual(await s.store.read(1), a);
    assert.ok(s.db.overlay.get(1)!.length < 100, 'moved out of LMDB');
    assert.deepEqual(await fileBlock(s, 1), a);
    assert.equal(await s.store.read(2), null, 'hides the data below');
    assert.equal(kind(s, 2), 3);
    await assert.rejects(s.store.read(3), { code: 'ECORRUPT' });
    await assert.rejects(s.store.read(4), { code: 'ECORRUPT' });
    assert.equal(s.store.stats.corrupt, 2);
    await reopen(s, { rebooted: true });
    assert.deepEqual(await s.store.read(1), a, 'durable once moved');
    assertUntouched(s);
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
