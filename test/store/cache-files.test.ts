// The cache's block files (issue 9): ranged reads and writes touch only the bytes
// they name, a partial write builds on the right base, dirty blocks survive a crash
// and are checked after a reboot, an old-format cache dir is migrated, and the
// files stay sparse (eviction and zero writes free their space).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { CacheStore, DEFAULT_CACHE_CONFIG, type CacheConfig } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import { fileNative } from '../../dist/util/file-native.js';
import { checksumsOf, recordAfterWrite, recordSegment, segmentSize } from '../../dist/store/cache-records.js';

const BS = 256 * 1024;
const COUNT = 512;

/** A memory store that counts the bytes it hands up and can hold its uploads. */
class CountingStore extends MemoryBlockStore {
  bytesRead = 0;
  held = false;
  override async read(index: number): Promise<Buffer | null> {
    const b = await super.read(index);
    this.bytesRead += b?.length ?? 0;
    return b;
  }
  override async write(index: number, data: Buffer | null): Promise<void> {
    if (this.held) await new Promise(() => {}); // an upload that never ends: the process "dies"
    return super.write(index, data);
  }
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, config: Partial<CacheConfig> = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-cachefiles-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const dbs: LocalDb[] = [];
  const openDb = () => {
    const db = LocalDb.open(dir, identity);
    dbs.push(db);
    return db;
  };
  const make = (inner: MemoryBlockStore, db: LocalDb) => new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, writeDelayMs: 0, ...config }, inner, { db, log: silentLogger });
  t.after(async () => {
    for (const db of dbs) await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, openDb, make };
}

/** A started cache whose uploads never end (the process "dies" before any): all it journals stays dirty. */
async function stuckCache(s: Awaited<ReturnType<typeof setup>>): Promise<{ cache: CacheStore; db: LocalDb }> {
  const stuck = new CountingStore(BS, COUNT);
  stuck.held = true;
  const db = s.openDb();
  const cache = s.make(stuck, db);
  await cache.start();
  return { cache, db };
}

test('ranged reads and writes: a piece of a local block, a never-written block, a block stored only below', async (t) => {
  const { openDb, make } = await setup(t);
  const inner = new CountingStore(BS, COUNT);
  const below = randomBytes(BS);
  inner.blocks.set(3, Buffer.from(below));
  const cache = make(inner, openDb());
  await cache.start();

  // A 4 KiB read of a block stored below fetches it once; later pieces come from the file.
  assert.deepEqual(await cache.readRange(3, 8192, 4096), below.subarray(8192, 12288));
  assert.equal(inner.bytesRead, BS);
  assert.deepEqual(await cache.readRange(3, 100, 50), below.subarray(100, 150));
  assert.equal(inner.bytesRead, BS, 'a hit asks nothing below');

  // A piece written into a never-written block: the rest reads as zeros.
  const piece = randomBytes(128 * 1024);
  await cache.writeRange(10, 64 * 1024, Buffer.from(piece), piece.length);
  const expect10 = Buffer.alloc(BS);
  piece.copy(expect10, 64 * 1024);
  assert.deepEqual(await cache.read(10), expect10);

  // A piece written onto a block stored below and not local: built on what S3 holds.
  inner.blocks.set(20, randomBytes(BS));
  const base20 = Buffer.from(inner.blocks.get(20) as Buffer);
  const p20 = randomBytes(4096);
  await cache.writeRange(20, 4096, Buffer.from(p20), 4096);
  p20.copy(base20, 4096);
  assert.deepEqual(await cache.read(20), base20);

  // Zeroing a range of a dirty block, then the whole block.
  await cache.writeRange(10, 64 * 1024, null, 4096);
  expect10.fill(0, 64 * 1024, 64 * 1024 + 4096);
  assert.deepEqual(await cache.read(10), expect10);
  await cache.flush();
  assert.deepEqual(inner.blocks.get(10), expect10);
  assert.deepEqual(inner.blocks.get(20), base20);
  await cache.writeRange(10, 0, null, BS);
  assert.equal(await cache.read(10), null);
  assert.equal(await cache.readRange(10, 5, 5), null, 'a zero block reads as zeros (null)');
  await cache.flush();
  assert.equal(inner.blocks.has(10), false, 'the zero write deleted it below');
  await cache.close();
});

test('the cache files stay sparse: evicted and zeroed blocks give their space back', async (t) => {
  const { dir, openDb, make } = await setup(t, { maxBytes: 4 * BS });
  const inner = new CountingStore(BS, COUNT);
  for (let i = 0; i < 40; i++) inner.blocks.set(i, randomBytes(BS));
  const cache = make(inner, openDb());
  await cache.start();
  for (let i = 0; i < 40; i++) await cache.read(i);
  const used = (await stat(path.join(dir, 'data', 'slab-0'))).blocks * 512;
  assert.ok(used <= 6 * BS, `the file holds about the ${4} cached blocks, not 40: ${used} bytes`);
  assert.ok(cache.stats.evictions >= 36);
  await cache.close();
});

test('kill -9: dirty blocks (whole and pieces) are replayed from the files; same boot, the file is authoritative', async (t) => {
  const { openDb, make } = await setup(t);
  const stuck = new CountingStore(BS, COUNT);
  stuck.held = true;
  const db1 = openDb();
  const c1 = make(stuck, db1);
  await c1.start();
  const whole = randomBytes(BS);
  await c1.write(1, Buffer.from(whole));
  const piece = randomBytes(4096);
  await c1.writeRange(2, 0, Buffer.from(piece), 4096);
  await c1.writeRange(3, 0, null, BS);
  await db1.close(); // the process dies with uploads in flight
  const below = new CountingStore(BS, COUNT);
  below.blocks.set(3, randomBytes(BS));
  const c2 = make(below, openDb());
  await c2.start();
  assert.equal(c2.stats.replayed, 3);
  assert.equal(c2.stats.dropped, 0);
  assert.deepEqual(below.blocks.get(1), whole);
  const expect2 = Buffer.alloc(BS);
  piece.copy(expect2);
  assert.deepEqual(below.blocks.get(2), expect2);
  assert.equal(below.blocks.has(3), false, 'the zero write was replayed as a delete');
  await c2.close();
});

test('after a reboot a dirty block whose bytes no longer match its journal is never uploaded; the others are', async (t) => {
  const s = await setup(t);
  const { dir, openDb, make } = s;
  const { cache: c1, db: db1 } = await stuckCache(s);
  const good = randomBytes(BS);
  const damaged = randomBytes(BS);
  await c1.write(4, Buffer.from(good));
  await c1.write(5, Buffer.from(damaged));
  await db1.meta.put('bootId', 'a-boot-before-this-one'); // as if the machine restarted
  await db1.close();
  // The kernel lost part of block 5's pages in the reboot.
  const fh = await open(path.join(dir, 'data', 'slab-0'), 'r+');
  await fh.write(Buffer.alloc(4096), 0, 4096, 5 * BS + 8192);
  await fh.close();
  const below = new CountingStore(BS, COUNT);
  const old5 = randomBytes(BS);
  below.blocks.set(5, Buffer.from(old5));
  const c2 = make(below, openDb());
  await c2.start();
  assert.equal(c2.stats.dropped, 1);
  assert.equal(c2.stats.replayed, 1);
  assert.deepEqual(below.blocks.get(4), good, 'the verified write was uploaded');
  assert.deepEqual(below.blocks.get(5), old5, 'the unverifiable write was not');
  assert.deepEqual(await c2.read(5), old5, 'and the block is read from below again');
  await c2.close();
});

/** Bytes this process has read through read(2) and friends so far (page cache hits included). */
async function readChars(): Promise<number> {
  const io = await readFile('/proc/self/io', 'utf8');
  return Number(/^rchar: (\d+)$/m.exec(io)?.[1]);
}

test('a piece written over zeros (a never-written block, a block written as zeros) is summed alone, and its record verifies after a reboot', async (t) => {
  // Uploads wait out a long write delay: only the write itself reads anything.
  const s = await setup(t, { writeDelayMs: 60_000 });
  const { openDb, make } = s;
  const { cache: c1, db: db1 } = await stuckCache(s);
  const seg = segmentSize(BS);
  const p6 = randomBytes(2 * seg);
  await c1.writeRange(9, seg, randomBytes(2 * seg), 2 * seg); // the first of its kind loads what it needs
  const before = await readChars();
  await c1.writeRange(6, seg, Buffer.from(p6), p6.length); // never written, absent below
  const read = (await readChars()) - before;
  assert.ok(read < BS / 2, `the block was not read back to sum it: ${read} bytes read`);
  await c1.writeRange(7, 0, null, BS); // a dirty block of zeros...
  const p7 = randomBytes(seg);
  await c1.writeRange(7, 2 * seg, Buffer.from(p7), seg); // ...then a piece of it
  const p8 = randomBytes(1000); // not segment-aligned: its segment is read and summed
  await c1.writeRange(8, 70_000, Buffer.from(p8), p8.length);
  const expected = (parts: Array<[number, Buffer]>): Buffer => {
    const b = Buffer.alloc(BS);
    for (const [at, p] of parts) p.copy(b, at);
    return b;
  };
  const want = new Map([[6, expected([[seg, p6]])], [7, expected([[2 * seg, p7]])], [8, expected([[70_000, p8]])]]);
  for (const [i, b] of want) {
    const record = db1.local.get(i) as Buffer;
    const sums = Array.from({ length: BS / seg }, (_, k) => record.readUInt32BE(1 + 4 * k));
    assert.deepEqual(sums, Array.from({ length: BS / seg }, (_, k) => crc32(b.subarray(k * seg, (k + 1) * seg))), `block ${i}'s record`);
  }
  await db1.meta.put('bootId', 'a-boot-before-this-one'); // as if the machine restarted: records are checked
  await db1.close();
  const below = new CountingStore(BS, COUNT);
  const c2 = make(below, openDb());
  await c2.start();
  assert.equal(c2.stats.dropped, 0);
  assert.equal(c2.stats.replayed, 4);
  for (const [i, b] of want) assert.deepEqual(below.blocks.get(i), b, `block ${i} uploaded after the reboot`);
  await c2.close();
});

test('a 4 KiB write into a dirty block reads nothing back; an unaligned one reads only the 4 KiB segments it touches', async (t) => {
  const { cache: c, db } = await stuckCache(await setup(t, { writeDelayMs: 60_000 }));
  assert.equal(segmentSize(BS), 4096);
  const block = randomBytes(BS);
  await c.write(3, Buffer.from(block));
  const aligned = randomBytes(4096);
  let before = await readChars();
  await c.writeRange(3, 20 * 4096, Buffer.from(aligned), 4096);
  const readAligned = (await readChars()) - before; // /proc/self/io's own few hundred bytes
  assert.ok(readAligned < 4096, `an aligned 4 KiB write is summed from its own bytes: ${readAligned} bytes read`);
  aligned.copy(block, 20 * 4096);
  const odd = randomBytes(512);
  before = await readChars();
  await c.writeRange(3, 7 * 4096 + 4000, Buffer.from(odd), odd.length); // straddles segments 7 and 8
  const read = (await readChars()) - before;
  assert.ok(read >= 2 * 4096 && read < 4 * 4096, `read ${read} bytes to sum two segments`);
  odd.copy(block, 7 * 4096 + 4000);
  const record = db.local.get(3) as Buffer;
  assert.equal(record.length, 1 + 4 * (BS / 4096));
  for (let k = 0; k < BS / 4096; k++) assert.equal(record.readUInt32BE(1 + 4 * k), crc32(block.subarray(k * 4096, (k + 1) * 4096)), `segment ${k}`);
  assert.deepEqual(await c.read(3), block);
});

/** A dirty record as the build before session 25 wrote it: a CRC-32 per 64 KiB. */
function oldRecord(b: Buffer): Buffer {
  const r = Buffer.alloc(1 + 4 * (b.length / 65536));
  r[0] = 2;
  for (let k = 0; k < b.length / 65536; k++) r.writeUInt32BE(crc32(b.subarray(k * 65536, (k + 1) * 65536)), 1 + 4 * k);
  return r;
}

test('a journal an earlier build wrote (64 KiB segments) is checked as written after a reboot', async (t) => {
  const s = await setup(t);
  const { dir, openDb, make } = s;
  const { cache: c1, db: db1 } = await stuckCache(s);
  const blocks = new Map([4, 5, 6].map((i) => [i, randomBytes(BS)]));
  for (const [i, b] of blocks) await c1.write(i, Buffer.from(b));
  for (const [i, b] of blocks) await db1.local.put(i, oldRecord(b));
  await db1.meta.put('bootId', 'a-boot-before-this-one'); // as if the machine restarted
  await db1.close();
  const fh = await open(path.join(dir, 'data', 'slab-0'), 'r+');
  await fh.write(Buffer.alloc(4096), 0, 4096, 5 * BS + 8192); // block 5's pages were lost
  await fh.close();
  const below = new CountingStore(BS, COUNT);
  const c2 = make(below, openDb());
  await c2.start();
  assert.equal(c2.stats.dropped, 1, 'only the damaged block is dropped');
  assert.equal(c2.stats.replayed, 2);
  assert.deepEqual(below.blocks.get(4), blocks.get(4));
  assert.deepEqual(below.blocks.get(6), blocks.get(6));
  assert.equal(below.blocks.get(5), undefined, 'the unverifiable write was not uploaded');
  await c2.close();
});

test('a write over a record of another layout sums the whole block again, in 4 KiB segments', async () => {
  const block = randomBytes(BS);
  const piece = randomBytes(4096);
  piece.copy(block, 8192);
  const asked: Array<[number, number]> = [];
  const record = await recordAfterWrite(BS, oldRecord(block), 8192, piece, async (from, length) => {
    asked.push([from, length]);
    return block.subarray(from, from + length);
  });
  assert.deepEqual(asked, [[0, BS]]);
  assert.deepEqual(record, checksumsOf(BS, block));
  assert.equal(record.length, 1 + 4 * (BS / 4096));
  // The same write over a record of this layout reads nothing.
  asked.length = 0;
  const again = await recordAfterWrite(BS, record, 8192, piece, async () => {
    throw new Error('read');
  });
  assert.deepEqual(again, record);
  // And an old record is checked in its own layout.
  assert.deepEqual(checksumsOf(BS, block, recordSegment(BS, oldRecord(block))), oldRecord(block));
});

test('segments: 4 KiB for blocks up to 1 MiB, 256 per larger block, never over 64 KiB, so a 128 KiB write of a 64 MiB block reads nothing back', async () => {
  const KiB = 1024;
  const MiB = 1024 * KiB;
  assert.deepEqual(
    [4 * KiB, 64 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB].map((bs) => segmentSize(bs)),
    [4 * KiB, 4 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 64 * KiB],
  );
  const bs = 64 * MiB;
  const previous = checksumsOf(bs, Buffer.alloc(bs));
  const piece = randomBytes(128 * KiB);
  const record = await recordAfterWrite(bs, previous, 5 * 128 * KiB, piece, async () => {
    throw new Error('read back');
  });
  assert.equal(record.length, 1 + 4 * 1024);
  assert.equal(record.readUInt32BE(1 + 4 * 10), crc32(piece.subarray(0, 64 * KiB)));
  assert.equal(record.readUInt32BE(1 + 4 * 11), crc32(piece.subarray(64 * KiB)));
});

test('a cache dir of format 1 (whole blocks in LMDB) is migrated: its journal is replayed, its clean blocks dropped', async (t) => {
  const { openDb, make } = await setup(t);
  const db = openDb();
  const dirty = randomBytes(BS);
  const entry = Buffer.alloc(4 + BS);
  entry.writeUInt32BE(crc32(dirty), 0);
  dirty.copy(entry, 4);
  const clean = Buffer.alloc(4 + BS);
  await db.legacyBlocks.put(8, entry);
  await db.dirty.put(8, 1);
  await db.legacyBlocks.put(9, clean);
  const below = new CountingStore(BS, COUNT);
  const c = make(below, db);
  await c.start();
  assert.deepEqual(below.blocks.get(8), dirty);
  assert.equal(db.legacyBlocks.getCount(), 0);
  assert.equal(c.holds(9), false);
  await c.close();
});

test('reads racing writes and uploads of the same block: after flush the store below holds the last write', async (t) => {
  const { openDb, make } = await setup(t, { uploadConcurrency: 4 });
  const inner = new CountingStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  const ref = Buffer.alloc(BS);
  const ops: Promise<unknown>[] = [];
  for (let k = 0; k < 200; k++) {
    const at = (k * 7919) % (BS - 4096);
    const piece = randomBytes(4096);
    piece.copy(ref, at);
    ops.push(cache.writeRange(0, at, Buffer.from(piece), 4096));
    ops.push(cache.readRange(0, at, 4096));
    if (k % 50 === 0) ops.push(cache.flush().catch(() => {}));
  }
  await Promise.all(ops);
  await cache.flush();
  assert.deepEqual(inner.blocks.get(0), ref);
  await cache.close();
});

test('an uploaded block is sent on its way to the local disk; a block written as zeros has nothing to send', async (t) => {
  const { openDb, make } = await setup(t);
  const inner = new CountingStore(BS, COUNT);
  const cache = make(inner, openDb());
  await cache.start();
  await cache.write(1, randomBytes(BS));
  await cache.writeRange(2, 4096, randomBytes(8192), 8192);
  await cache.write(3, Buffer.alloc(BS));
  await cache.flush();
  assert.equal(inner.blocks.size, 2);
  assert.equal(cache.stats.writeOuts, 2);
  await cache.close();
});

test('the file addon starts writing out a range of a file; bad arguments and a closed fd are refused', async (t) => {
  const { dir } = await setup(t);
  const native = fileNative();
  const fh = await open(path.join(dir, 'f'), 'w+');
  await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, 0);
  native.writeOut(fh.fd, 0, 64 * 1024);
  native.writeOut(fh.fd, 1 << 30, 4096); // past the end: nothing to write, not an error
  assert.throws(() => native.writeOut(fh.fd, -1, 4096), TypeError);
  assert.throws(() => native.writeOut(fh.fd, 0, 0), TypeError);
  assert.throws(() => (native.writeOut as (...a: unknown[]) => void)(fh.fd, 0), TypeError);
  const fd = fh.fd;
  await fh.close();
  assert.throws(() => native.writeOut(fd, 0, 4096), (err: NodeJS.ErrnoException & { errno?: number }) => err.errno === 9); // EBADF
});
