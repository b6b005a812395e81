// The cache's part of direct reads (CacheStore.useDirectReads): which blocks it grants
// to a recording DirectReads, and that it revokes one before its file range changes
// or is punched out (checked against the file's bytes at the moment of the revoke),
// counts direct reads as uses for eviction, and turns direct reads off at close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { silentLogger } from '../../dist/log.js';
import type { DirectReads } from '../../dist/store/types.js';

const BS = 4096;
const COUNT = 64;

/** Records calls; on revoke, what the block's file range held (it must still be the granted bytes). */
class Recorder implements DirectReads {
  granted = new Set<number>();
  events: string[] = [];
  files = new Map<number, number>();
  pending: number[] = [];
  disabled = false;
  constructor(private readonly peek: (index: number) => Buffer) {}
  file(file: number, fd: number): void {
    this.files.set(file, fd);
  }
  grant(index: number): boolean {
    assert.ok(!this.disabled, 'no grant after disable');
    this.granted.add(index);
    this.events.push(`grant ${index}`);
    return true;
  }
  revoke(index: number): void {
    if (this.granted.delete(index)) this.events.push(`revoke ${index}: ${this.peek(index).toString('hex', 0, 4)}`);
  }
  touched(): number[] {
    return this.pending.splice(0);
  }
  disable(): void {
    this.disabled = true;
    this.events.push('disable');
  }
}

test('direct reads: grants verified local blocks, revokes before the file changes or is punched, off at close', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-direct-'));
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const db = LocalDb.open(dir, identity);
  t.after(async () => {
    await db.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const inner = new MemoryBlockStore(BS, COUNT);
  const inner2 = new MemoryBlockStore(BS, COUNT);
  const stored = randomBytes(BS);
  inner.blocks.set(3, Buffer.from(stored));
  // Room for 4 clean blocks: the fifth evicts the least recently used.
  const cache = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, maxBytes: 4 * BS, writeDelayMs: 0 }, inner, { db, log: silentLogger });
  await cache.start();
  let slab = -1;
  const rec = new Recorder((index) => {
    const out = Buffer.alloc(BS);
    readSync(slab, out, 0, BS, index * BS);
    return out;
  });
  cache.useDirectReads(rec);

  // A fetched block is granted once it is in its file and verified.
  assert.deepEqual(await cache.read(3), stored);
  assert.deepEqual(rec.events, ['grant 3']);
  assert.equal(rec.files.size, 1);
  slab = rec.files.get(0)!;

  // A write: revoked while the file still holds the old bytes, granted again after.
  const next = randomBytes(BS);
  await cache.writeRange(3, 0, next, BS);
  assert.deepEqual(rec.events.slice(1), [`revoke 3: ${stored.toString('hex', 0, 4)}`, 'grant 3']);

  // Zeros: revoked, and not granted while written as zeros (its range is punched).
  rec.events.length = 0;
  await cache.writeRange(3, 0, null, BS);
  assert.deepEqual(rec.events, [`revoke 3: ${next.toString('hex', 0, 4)}`]);
  assert.ok(!rec.granted.has(3));

  // A partial write to a block never read: granted once written.
  rec.events.length = 0;
  await cache.writeRange(9, 100, randomBytes(200), 200);
  assert.deepEqual(rec.events, ['grant 9']);
  await cache.flush();

  // Eviction: the LRU victim is revoked before its range is punched (the peek still sees
  // its bytes); a block read directly counts as used, so it is not the victim.
  const data = new Map<number, Buffer>();
  for (const i of [10, 11, 12]) {
    data.set(i, randomBytes(BS));
    await cache.writeRange(i, 0, Buffer.from(data.get(i)!), BS);
  }
  await cache.flush();
  rec.events.length = 0;
  rec.pending.push(9); // block 9, the oldest, was read directly meanwhile
  await new Promise((r) => setTimeout(r, 700));
  await cache.writeRange(13, 0, randomBytes(BS), BS);
  await cache.flush();
  const revoked = rec.events.filter((e) => e.startsWith('revoke'));
  assert.equal(revoked.length, 1, rec.events.join(', '));
  const victim = Number(/revoke (\d+)/.exec(revoked[0]!)![1]);
  assert.ok(data.has(victim), `the victim ${victim} is one of 10-12, not 9 (read directly)`);
  assert.equal(revoked[0], `revoke ${victim}: ${data.get(victim)!.toString('hex', 0, 4)}`, 'revoked before its range was punched');
  assert.ok(rec.granted.has(9));

  await cache.close();
  assert.equal(rec.events.at(-1), 'disable');
  await db.close();

  // The next mount: a block kept from the last one is granted once it has been verified
  // (its first read, answered from the file), not before.
  const db2 = LocalDb.open(dir, identity);
  t.after(() => db2.close().catch(() => {}));
  const cache2 = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, maxBytes: 4 * BS, writeDelayMs: 0 }, inner2, { db: db2, log: silentLogger });
  await cache2.start();
  const rec2 = new Recorder(() => Buffer.alloc(0));
  cache2.useDirectReads(rec2);
  assert.deepEqual(rec2.events, [], 'nothing verified yet in this mount');
  await cache2.readRange(9, 0, 512);
  assert.deepEqual(rec2.events, ['grant 9']);
  assert.equal(inner2.stats.read, 0, 'from the cache file');
  await cache2.close();
});
