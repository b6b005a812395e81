// The daemon's open of a cache folder (LocalDb.openForMount): unsynced commits for
// read-write and read-only mounts, marked by the boot id until a clean close; a folder
// left by such a session is dropped after a restart of the machine and kept after a
// crash of the process; a folder with overlay writes always syncs. And, on a full
// disk: a batch lands whole or not at all, and durable() and close() still end; after
// close, durable() rejects instead of syncing a freed environment (a crash).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalDb } from '../../dist/store/local-db.js';
import { S3zError } from '../../dist/errors.js';
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

test('a folder open in this process is refused a second open (LMDB would hang the process), and opens again once closed', async (t) => {
  const { dir, identity } = await folder(t);
  const db = LocalDb.open(dir, identity);
  t.after(() => db.close());
  // What hung a test: writes pending in the first environment when the second one opens.
  const pending = db.local.put(1, Buffer.from([1]));
  assert.throws(() => LocalDb.open(dir, identity), { code: 'EMOUNT', message: /already open in this process/ });
  // The same folder by another path is the same environment.
  assert.throws(() => LocalDb.open(path.join(dir, '.', '..', path.basename(dir)), identity), { code: 'EMOUNT' });
  await assert.rejects(LocalDb.openForMount(dir, identity, true), { code: 'EMOUNT' });
  await pending;
  assert.deepEqual(db.local.get(1), Buffer.from([1]), 'the first one is untouched');
  await db.close();
  const again = await LocalDb.openForMount(dir, identity, true);
  assert.deepEqual(again.local.get(1), Buffer.from([1]));
  await again.close();
});

test('durable() after close rejects ECLOSED, synced or not, and the process lives', async (t) => {
  const { dir, identity } = await folder(t);
  for (const fast of [false, true]) {
    const db = fast ? await LocalDb.openForMount(dir, identity, true) : LocalDb.open(dir, identity);
    await db.dirty.put(1, 1);
    await db.durable();
    const closing = db.close();
    // An upload that outlived its database asks, during the close and after it.
    await assert.rejects(db.durable(), { code: 'ECLOSED' });
    await closing;
    await assert.rejects(db.durable(), { code: 'ECLOSED' });
  }
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

for (const unsynced of [false, true]) {
  const how = unsynced ? 'without syncs (a mount)' : 'synced';
  test(`commits ${how}: a batch lands whole or, on a full disk, not at all and rejected; then durable() and close() still end`, async (t) => {
    if (process.getuid?.() !== 0) {
      assert.notEqual(process.env.CI, 'true', 'CI runs as root');
      t.skip('needs root (mount -t tmpfs)');
      return;
    }
    const mnt = await mkdtemp(path.join(tmpdir(), 's3z-localdb-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    // lmdb-js hangs a promise of its own on a failed commit (`commitError`) and rejects it:
    // LocalDb handles it, so nothing is left unhandled.
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => {
      unhandled.push(e);
    };
    process.on('unhandledRejection', onUnhandled);
    const identity = { uuid: randomUUID(), size: 1 << 24, blockSize: 1 << 20 };
    const db = unsynced ? await LocalDb.openForMount(path.join(mnt, 'cache'), identity, true) : LocalDb.open(path.join(mnt, 'cache'), identity);
    // One hook, in order: the database, the mount, then its folder.
    t.after(async () => {
      await db.close().catch(() => {});
      process.off('unhandledRejection', onUnhandled);
      execFileSync('umount', ['-l', mnt]);
      await rm(mnt, { recursive: true, force: true });
    });

    await db.batch(() => {
      db.local.putInBatch(1, Buffer.alloc(100, 1));
      db.dirty.putInBatch(1, 7);
    });
    assert.equal(db.local.get(1)?.length, 100);
    assert.equal(db.dirty.get(1), 7);

    assert.throws(() => writeFileSync(path.join(mnt, 'fill'), Buffer.alloc(8 << 20)), /ENOSPC/);
    const failed = await db
      .batch(() => {
        db.local.putInBatch(2, Buffer.alloc(2 << 20, 2));
        db.dirty.putInBatch(2, 8);
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    assert.ok(failed instanceof S3zError, `the commit failed and said so: ${String(failed)}`);
    assert.equal(failed.code, 'ENOSPACE');
    assert.match(failed.message, /could not commit: .*No space left/, 'the reason, not lmdb-js\'s "see commitError"');
    assert.equal(db.local.get(2), undefined, 'neither put landed');
    assert.equal(db.dirty.get(2), undefined, 'neither put landed');

    // Nothing succeeded since: lmdb-js's own sync promise is stuck now, ours is not.
    const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
      Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);
    assert.notEqual(await within(db.durable(), 2000), 'timeout', 'durable() ends');
    const started = Date.now();
    await db.close();
    assert.ok(Date.now() - started < 8000, `close() ended after ${Date.now() - started} ms`);
    assert.equal(existsSync(path.join(mnt, 'cache', 'daemon.pid')), false, 'released');
    assert.deepEqual(unhandled, [], 'no promise was left to reject unhandled');
  });
}

test('a single write or a transaction whose commit fails: the error names the cause and handles the rejection lmdb-js leaves (node:test fails a test that leaves one)', async (t) => {
  if (process.getuid?.() !== 0) {
    assert.notEqual(process.env.CI, 'true', 'CI runs as root');
    t.skip('needs root (mount -t tmpfs)');
    return;
  }
  const mnt = await mkdtemp(path.join(tmpdir(), 's3z-localdb-put-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  process.on('unhandledRejection', onUnhandled);
  const db = await LocalDb.openForMount(path.join(mnt, 'cache'), { uuid: randomUUID(), size: 1 << 24, blockSize: 1 << 20 }, true);
  t.after(async () => {
    await db.close().catch(() => {});
    process.off('unhandledRejection', onUnhandled);
    execFileSync('umount', ['-l', mnt]);
    await rm(mnt, { recursive: true, force: true });
  });
  // Something to remove and to clear once the disk is full.
  await db.dirty.put(3, 1);
  await db.guard.put(3, { sum: null, until: 0 });
  assert.throws(() => writeFileSync(path.join(mnt, 'fill'), Buffer.alloc(8 << 20)), /ENOSPC/);
  const turns = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  // A record's size, as the cache writes them (lmdb-js 3.5.6 aborts the process at exit
  // after a failed commit of a value of megabytes: a size no layer writes).
  // A table's own put: LocalDb's tables send every async write through committing().
  const failed = await db.local.put(3, Buffer.alloc(100, 3)).then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(failed instanceof S3zError, `the put failed and said so: ${String(failed)}`);
  assert.equal(failed.code, 'ENOSPACE');
  assert.match(failed.message, /No space left/);
  // A transaction (the cache's clean mark after an upload) fails the same way.
  const txn = await db
    .transaction(() => {
      db.dirty.removeSync(3);
      db.local.putSync(3, Buffer.alloc(33, 1));
    })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  assert.ok(txn instanceof S3zError, `the transaction failed and said so: ${String(txn)}`);
  assert.equal(txn.code, 'ENOSPACE');
  await turns();
  // A remove and a clear of a table, if they fail (LMDB may find a free page for them), say so the same way.
  for (const write of [() => db.dirty.remove(3), () => db.guard.clearAsync()]) {
    const err = await write().then(() => undefined, (e: unknown) => e);
    assert.ok(err === undefined || (err instanceof S3zError && (err.code === 'ENOSPACE' || err.code === 'ECACHEDIR')), `said why: ${String(err)}`);
  }
  await turns();
  assert.deepEqual(unhandled, [], 'committing() left nothing unhandled');
});
