// Room on a full local disk: a refused write is tried again after shedding clean blocks
// and a growing pause, a few times, then fails with ENOSPACE (cause kept); other errors,
// and any error once the cache is closing, are not retried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskRoom } from '../../dist/store/disk-room.js';
import { S3zError, isS3zError } from '../../dist/errors.js';
import { silentLogger } from '../../dist/log.js';

function room(opts: { closed?: () => boolean; retries?: number } = {}) {
  const seen = { shed: 0, settled: 0, refused: 0 };
  const r = new DiskRoom({
    dir: '/cache',
    shed: () => void seen.shed++,
    settled: async () => void seen.settled++,
    closed: opts.closed ?? (() => false),
    refused: () => void seen.refused++,
    log: silentLogger,
    backoffMs: 1,
    ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
  });
  return { r, seen };
}

const full = (err: unknown): boolean => isS3zError(err, 'ENOSPACE');
const noSpace = (): S3zError => new S3zError('ENOSPACE', 'disk full');

test('a write refused twice succeeds on the third attempt, after room was made twice', async () => {
  const { r, seen } = room();
  let attempts = 0;
  const out = await r.retry(7, async () => {
    if (++attempts < 3) throw noSpace();
    return 'written';
  }, full);
  assert.equal(out, 'written');
  assert.equal(attempts, 3);
  assert.deepEqual(seen, { shed: 2, settled: 2, refused: 2 });
});

test('a disk that stays full fails the write with ENOSPACE after the retries, naming block and dir', async () => {
  const { r, seen } = room({ retries: 3 });
  let attempts = 0;
  const cause = noSpace();
  await assert.rejects(
    r.retry(5, async () => {
      attempts++;
      throw cause;
    }, full),
    (err: unknown) => {
      assert.ok(isS3zError(err, 'ENOSPACE'));
      assert.match((err as Error).message, /block 5: the local cache disk \(\/cache\) has no room left/);
      assert.equal((err as Error).cause, cause);
      return true;
    },
  );
  assert.equal(attempts, 4, 'the first attempt and 3 retries');
  assert.equal(seen.shed, 3);
  assert.equal(seen.refused, 4);
});

test('an error the caller does not call "full" passes through at once', async () => {
  const { r, seen } = room();
  const other = new Error('EIO');
  await assert.rejects(r.retry(1, async () => {
    throw other;
  }, full), (err) => err === other);
  assert.deepEqual(seen, { shed: 0, settled: 0, refused: 0 });
});

test('once the cache is closing, a refused write fails without a retry', async () => {
  const { r, seen } = room({ closed: () => true });
  let attempts = 0;
  await assert.rejects(r.retry(2, async () => {
    attempts++;
    throw noSpace();
  }, full), (err) => isS3zError(err, 'ENOSPACE'));
  assert.equal(attempts, 1);
  assert.equal(seen.shed, 0);
});
