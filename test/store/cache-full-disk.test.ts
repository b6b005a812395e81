// The cache layer on a local disk that fills up (a small tmpfs, filled behind the
// cache's back): a refused local write sheds clean blocks and retries, then answers
// ENOSPC to that writer; the process stays up, what was acknowledged stays readable,
// and writes work again once there is room. Needs root (mount -t tmpfs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes, randomUUID } from 'node:crypto';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { LocalDb } from '../../dist/store/local-db.js';
import { S3zError } from '../../dist/errors.js';
import { silentLogger } from '../../dist/log.js';

const run = promisify(execFile);
const BS = 256 * 1024;
const COUNT = 1024;
const root = process.getuid?.() === 0;
if (process.env.CI === 'true') assert.ok(root, 'CI runs as root');

// Whole blocks go to the page cache through libuv's pool; pieces of 128 KiB (ZFS's) are
// written on the calling thread (slab-file.ts, SMALL_WRITE): both must refuse the same way.
for (const [unsynced, piece] of [[false, BS], [true, BS], [true, 128 * 1024]] as const) {
const how = `${unsynced ? 'commits without syncs (as a mount opens it)' : 'commits synced'}, writes of ${piece / 1024} KiB`;
test(`a full cache disk, ${how}: ENOSPC for the writer, the process lives, acknowledged data stays, room comes back`, { skip: root ? false : 'needs root' }, async (t) => {
  const base = await mkdtemp(path.join(tmpdir(), 's3z-fulldisk-'));
  const mnt = path.join(base, 'tmpfs');
  await mkdir(mnt);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt]);
  t.after(async () => {
    await run('umount', ['-l', mnt]).catch(() => {});
    await rm(base, { recursive: true, force: true });
  });
  const identity = { uuid: randomUUID(), size: BS * COUNT, blockSize: BS };
  const db = unsynced ? await LocalDb.openForMount(path.join(mnt, 'cache'), identity, true) : LocalDb.open(path.join(mnt, 'cache'), identity);
  t.after(() => db.close().catch(() => {}));
  const mem = new MemoryBlockStore(BS, COUNT);
  // Uploads are held back (S3 is slow), so dirty data piles up locally.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = {
    blockSize: BS,
    blockCount: COUNT,
    read: (i: number) => mem.read(i),
    write: async (i: number, d: Buffer | null) => {
      await gate;
      return mem.write(i, d);
    },
    flush: () => mem.flush(),
    close: () => mem.close(),
  };
  const cache = new CacheStore({ ...DEFAULT_CACHE_CONFIG, readOnly: false, maxBytes: 64 * BS, maxDirtyBytes: 1024 * BS, writeDelayMs: 0 }, slow, { db, log: silentLogger });
  await cache.start();
  // Something else takes the disk.
  await writeFile(path.join(mnt, 'filler'), Buffer.alloc(16 * 1024 * 1024));
  // Acknowledged pieces, by block and offset.
  const acked: Array<{ i: number; at: number; data: Buffer }> = [];
  let refused: unknown;
  for (let i = 0; i < 64 && refused === undefined; i++) {
    for (let at = 0; at < BS && refused === undefined; at += piece) {
      const data = randomBytes(piece);
      try {
        await cache.writeRange(i, at, Buffer.from(data), piece);
        acked.push({ i, at, data });
      } catch (err) {
        refused = err;
      }
    }
  }
  assert.ok(refused instanceof S3zError, `a write was refused: ${String(refused)}`);
  assert.equal(refused.code, 'ENOSPACE');
  assert.equal(refused.errno, 28, 'ENOSPC for FUSE');
  assert.ok(acked.length > 0, 'some writes fitted');
  assert.ok(cache.stats.localErrors > 0);
  for (const { i, at, data } of acked) assert.deepEqual(await cache.readRange(i, at, piece), data, `acknowledged piece ${i}@${at} is intact`);
  // Room again: uploads go through, and new writes are taken.
  await rm(path.join(mnt, 'filler'));
  release();
  await cache.flush();
  const later = randomBytes(BS);
  await cache.write(100, later);
  await cache.flush();
  assert.deepEqual(await mem.read(100), later);
  for (const { i, at, data } of acked) assert.deepEqual((await mem.read(i))?.subarray(at, at + piece), data, `piece ${i}@${at} reached the store below`);
  await cache.close();
  await db.close();
});
}
