// How much disk the cache may use (src/mount/cache-budget.ts), given the room its
// folder has: --cache-size too small and a disk too small are told apart, a size that
// does not fit is bounded with a warning, and the budget splits into clean and dirty.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheBudget } from '../../dist/mount/cache-budget.js';
import { DEFAULT_CACHE_CONFIG, uploadsFor } from '../../dist/store/cache.js';
import { S3zError } from '../../dist/errors.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

test('--cache-size below two blocks names the option and the least it takes, whatever the disk', () => {
  assert.throws(
    () => cacheBudget('/c', 1024, MiB, 100 * GiB),
    (e: unknown) => e instanceof S3zError && /^--cache-size 1 KiB is too small for this volume: .* at least two \(--cache-size 2 MiB\)$/.test(e.message),
  );
  assert.doesNotThrow(() => cacheBudget('/c', 2 * MiB, MiB, 100 * GiB));
});

test('a disk too small for two blocks names the folder, its room, and the room needed; that much room is enough', () => {
  assert.throws(
    () => cacheBudget('/c', 10 * GiB, 4 * MiB, 20 * MiB),
    (e: unknown) => e instanceof S3zError && /^cache dir \/c has room for 20 MiB; the cache needs at least 30 MiB there: free some space/.test(e.message),
  );
  // 8 MiB of blocks + the 16 MiB reserve, over the 80% share: exactly 30 MiB.
  const b = cacheBudget('/c', 10 * GiB, 4 * MiB, 30 * MiB);
  assert.equal(b.maxBytes + b.maxDirtyBytes, 8 * MiB);
  assert.match(b.warning ?? '', /^--cache-size 10 GiB does not fit in \/c \(30 MiB free\); the cache is bounded to 8 MiB$/);
});

test('a size that fits is taken as asked, dirty data bounded at 1 GiB, and no warning', () => {
  const b = cacheBudget('/c', 10 * GiB, MiB, 100 * GiB);
  assert.equal(b.warning, undefined);
  assert.equal(b.maxDirtyBytes, GiB);
  assert.equal(b.maxBytes, 9 * GiB);
  const small = cacheBudget('/c', 64 * MiB, MiB, 100 * GiB);
  assert.equal(small.maxDirtyBytes, 32 * MiB, 'half of a small cache');
});

test('the dirty bound by block size: 64 Ki blocks at most (memory holds a record per dirty block); uploads hold at most 128 MiB of buffers', () => {
  assert.equal(cacheBudget('/c', 10 * GiB, 4096, 100 * GiB).maxDirtyBytes, 256 * MiB);
  assert.equal(cacheBudget('/c', 10 * GiB, 64 * MiB, 100 * GiB).maxDirtyBytes, GiB);
  assert.equal(cacheBudget('/c', 256 * MiB, 64 * MiB, 100 * GiB).maxDirtyBytes, 128 * MiB, 'still half of a small cache');
  assert.deepEqual(
    [MiB, 4 * MiB, 8 * MiB, 16 * MiB, 64 * MiB].map((bs) => uploadsFor(DEFAULT_CACHE_CONFIG.uploadConcurrency, bs)),
    [32, 32, 16, 8, 2],
  );
});
