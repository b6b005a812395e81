// The daemon's open of a cache folder (LocalDb.openForMount): unsynced commits for
// read-write and read-only mounts, marked by the boot id until a clean close; a folder
// left by such a session is dropped after a restart of the machine and kept after a
// crash of the process; a folder with overlay writes always syncs.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalDb } from '../../dist/store/local-db.js';
import { bootId } from '../../dist/store/cache-recovery.js';
import { slabDir } from '../../dist/store/slab-file.js';

async function folder(t: TestContext): Promise<{ dir: string; identity: { uuid: string; size: number; blockSize: number } }> {
  const dir = await mkdtemp(path.join(tmpdir(), 's3z-localdb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { dir, identity: { uuid: randomUUID(), size: 1 << 24, blockSize: 1 << 20 } };
}

const marker = (dir: string) => path.join(dir, 'unsynced');

test('a fast open marks the folder with the boot id until a clean close', async (t) => {
  const { dir, identity } = await folder(t);
  const db = await LocalDb.openForMount(dir, identity, true);
  assert.equal(readFileSync(marker(dir), 'utf8').trim(), bootId());
  await db.dirty.put(3, 7);
  await db.close();
  assert.equal(existsSync(marker(dir)), false, 'gone once synced and closed');
  const again = await LocalDb.openForMount(dir, identity, false);
  assert.equal(again.dirty.get(3), 7);
  assert.equal(existsSync(marker(dir)), false, 'a durable open leaves none');
  await again.close();
});

test('after a restart of the machine, a folder an unsynced session left is dropped, block files too', async (t) => {
  const { dir, identity } = await folder(t);
  const db = await LocalDb.openForMount(dir, identity, true);
  await db.dirty.put(3, 7);
  await db.local.put(3, Buffer.from([2, 1, 2, 3, 4]));
  await db.close();
  mkdirSync(slabDir(dir), { recursive: true });
  writeFileSync(path.join(slabDir(dir), 'slab-0'), 'bytes');
  // What a power cut leaves: the marker, with the boot id of the session that had it.
  writeFileSync(marker(dir), 'another-boot\n');
  const after = await LocalDb.openForMount(dir, identity, true);
  assert.equal(after.resetAfterRestart, true);
  assert.equal(after.dirty.getCount(), 0, 'the journal of writes never flushed is gone');
  assert.equal(after.local.getCount(), 0);
  assert.equal(existsSync(slabDir(dir)), false, 'and the block files');
  assert.equal(readFileSync(marker(dir), 'utf8').trim(), bootId(), 'marked again for this session');
  await after.close();
});

test('after a crash of the process (same boot) the folder is kept', async (t) => {
  const { dir, identity } = await folder(t);
  const db = await LocalDb.openForMount(dir, identity, true);
  await db.dirty.put(3, 7);
  await db.close();
  writeFileSync(marker(dir), `${bootId()}\n`); // a kill -9 leaves the marker
  const after = await LocalDb.openForMount(dir, identity, false);
  assert.equal(after.resetAfterRestart, false);
  assert.equal(after.dirty.get(3), 7);
  assert.equal(existsSync(marker(dir)), false, 'synced, then unmarked');
  await after.close();
});

test('a folder holding overlay writes always syncs', async (t) => {
  const { dir, identity } = await folder(t);
  const db = LocalDb.open(dir, identity);
  await db.overlay.put(1, Buffer.from([3]));
  await db.close();
  const fast = await LocalDb.openForMount(dir, identity, true);
  assert.equal(existsSync(marker(dir)), false, 'no unsynced session over local-only data');
  assert.equal(fast.overlay.getCount(), 1);
  await fast.close();
});
