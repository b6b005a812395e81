// Uploads read their block into buffers the cache uses again (block-buffers.ts),
// with blocks large enough to be hashed off the main thread in place: what reaches
// the store below is each block's bytes, unchanged for as long as its write runs,
// and the clean records written after the uploads are the right digests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import { sha256Of } from '../../dist/store/checksum.js';

const BS = 256 * 1024;
const COUNT = 32;

const hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Checks that a written buffer stays as it was until its write settles, and how often writes overlap. */
class SlowStore extends MemoryBlockStore {
  changedDuringWrite = 0;
  sharedInputs = 0;
  reads = 0;
  override async read(index: number): Promise<Buffer | null> {
    this.reads++;
    return super.read(index);
  }
  override async write(index: number, data: Buffer | null): Promise<void> {
    if (data !== null && data.buffer instanceof SharedArrayBuffer) this.sharedInputs++;
    const before = data === null ? null : hex(data);
    // As the S3 store does: hash off the main thread (in place for shared memory), then send.
    if (data !== null) await sha256Of(data);
    await new Promise((r) => setTimeout(r, 3));
    if (data !== null && hex(data) !== before) this.changedDuringWrite++;
    await super.write(index, data);
  }
}

test('uploads through reused buffers: each block arrives whole, unchanged during its write, and its clean record is right', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-upbuf-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const dbs: LocalDb[] = [];
  t.after(async () => {
    for (const db of dbs) await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const config = { ...DEFAULT_CACHE_CONFIG, readOnly: false, uploadConcurrency: 2, writeDelayMs: 0 };
  const inner = new SlowStore(BS, COUNT);
  const db1 = LocalDb.open(dir, identity);
  dbs.push(db1);
  const cache = new CacheStore(config, inner, { db: db1, log: silentLogger });
  await cache.start();
  const written = new Map<number, Buffer>();
  // Twelve blocks through two upload slots: every buffer is used several times.
  for (let i = 0; i < 12; i++) {
    const d = randomBytes(BS);
    written.set(i, d);
    await cache.write(i, Buffer.from(d));
  }
  // One block rewritten while uploads run: its last content must win.
  const last = randomBytes(BS);
  written.set(3, last);
  await cache.write(3, Buffer.from(last));
  await cache.flush();
  assert.equal(inner.changedDuringWrite, 0, 'no buffer changed while its write ran');
  assert.ok(inner.sharedInputs >= 12, `uploads came from shared buffers (${inner.sharedInputs})`);
  for (const [i, d] of written) assert.ok(inner.blocks.get(i)?.equals(d), `block ${i} below`);
  await cache.close();
  await db1.close();

  // The next mount checks each clean block against the digest recorded after its upload:
  // a digest taken from a reused buffer would fail it and fetch the block again.
  const db2 = LocalDb.open(dir, identity);
  dbs.push(db2);
  const below = new SlowStore(BS, COUNT);
  for (const [i, d] of inner.blocks) below.blocks.set(i, d);
  const cache2 = new CacheStore(config, below, { db: db2, log: silentLogger });
  await cache2.start();
  for (const [i, d] of written) assert.ok((await cache2.read(i))?.equals(d), `block ${i} after remount`);
  assert.equal(cache2.stats.corrupt, 0);
  assert.equal(below.reads, 0, 'every block served from the cache, verified');
  await cache2.close();
});
