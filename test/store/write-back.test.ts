// The write-back scheduler alone, driven through its hooks: what a flush waits for
// when an upload fails, and when only the cache's record of a finished upload fails;
// when a waiting block goes up (its delay, a rewrite, the dirty bound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_WAIT_DELAYS, WriteBack, type WriteBackConfig } from '../../dist/store/write-back.js';
import { silentLogger } from '../../dist/log.js';

const BS = 1 << 20;

interface Script {
  /** Per call of the hook, in order: true to fail it. */
  uploadFails: boolean[];
  cleanFails: boolean[];
}

function scheduler(
  script: Script,
  canRetry: () => boolean = () => true,
  config: Partial<WriteBackConfig> = {},
): { wb: WriteBack; uploads: number[]; cleans: Array<[number, number]> } {
  const uploads: number[] = [];
  const cleans: Array<[number, number]> = [];
  const wb: WriteBack = new WriteBack(
    { uploadConcurrency: 4, maxDirtyBytes: 64 * BS, writeDelayMs: 0, blockSize: BS, ...config },
    {
      upload: async (index) => {
        uploads.push(index);
        await new Promise((r) => setImmediate(r));
        if (script.uploadFails.shift() === true) throw new Error('S3 said no');
        return Buffer.alloc(32, index);
      },
      clean: async (index, seq) => {
        await new Promise((r) => setImmediate(r));
        if (script.cleanFails.shift() === true) throw new Error('the cache database could not commit: No space left on device');
        cleans.push([index, seq]);
        // As the cache does: its journal entry is gone.
        if (wb.seqOf(index) === seq) wb.forget(index);
      },
      canRetry,
    },
    silentLogger,
  );
  return { wb, uploads, cleans };
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);

test('an upload that fails fails the flush that waits for it; the block goes up on the retry', async () => {
  const { wb, uploads, cleans } = scheduler({ uploadFails: [true], cleanFails: [] });
  wb.written(5, wb.nextSeq(), true);
  await assert.rejects(wb.flush(), /S3 said no/, 'fsync must fail rather than lie');
  assert.equal(wb.stats.uploadErrors, 1);
  assert.notEqual(await within(wb.flush(), 5000), 'timeout', 'the retry uploads it');
  assert.deepEqual(uploads, [5, 5]);
  assert.deepEqual(cleans, [[5, 1]]);
  assert.equal(wb.size, 0);
  wb.close();
});

test('an upload whose clean mark fails fails no flush (S3 holds it); the block stays dirty and goes up again', async () => {
  const { wb, uploads, cleans } = scheduler({ uploadFails: [], cleanFails: [true] });
  wb.written(7, wb.nextSeq(), true);
  wb.written(8, wb.nextSeq(), true);
  const flushed = await within(
    wb.flush().then(
      () => 'resolved',
      (err: unknown) => `rejected: ${(err as Error).message}`,
    ),
    1500,
  );
  assert.equal(flushed, 'resolved', 'the flush resolves before the retry: both writes are in S3');
  assert.equal(wb.stats.uploadErrors, 1);
  assert.equal(wb.has(7), true, 'still dirty: its record says so');
  // The retry uploads it again and records it this time.
  for (let waited = 0; wb.size > 0 && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
  assert.equal(wb.size, 0);
  assert.deepEqual(uploads.sort(), [7, 7, 8]);
  assert.deepEqual(cleans.sort(), [[7, 1], [8, 2]]);
  // A later write of that block is waited for like any other.
  wb.written(7, wb.nextSeq(), true);
  assert.notEqual(await within(wb.flush(), 2000), 'timeout');
  assert.equal(wb.size, 0);
  wb.close();
});

test('a write of the block during the failed clean mark is still waited for by a later flush', async () => {
  const script: Script = { uploadFails: [], cleanFails: [true] };
  const { wb, uploads } = scheduler(script);
  wb.written(3, wb.nextSeq(), true);
  // While its first upload runs, the block is written again.
  await new Promise((r) => setImmediate(r));
  wb.written(3, wb.nextSeq(), true);
  await new Promise((r) => setImmediate(r));
  const flushed = await within(wb.flush(), 5000);
  assert.notEqual(flushed, 'timeout');
  assert.ok(uploads.length >= 2, 'the newer write went up too before the flush resolved');
  assert.equal(wb.size, 0);
  wb.close();
});

test('a retry due after the cache below went away uploads nothing', async () => {
  let open = true;
  const { wb, uploads } = scheduler({ uploadFails: [true], cleanFails: [] }, () => open);
  wb.written(3, wb.nextSeq(), true);
  await assert.rejects(wb.flush(), /S3 said no/);
  // What a stop told to stop now does: the cache's database closes, the scheduler is left as it is.
  open = false;
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(uploads, [3], 'no upload from a closed cache');
  assert.equal(wb.size, 1, 'the block stays dirty: the journal keeps it');
  wb.close();
});

test('near its dirty bound a waiting block still waits for its delay; a writer held back at the bound makes every waiting block due', async () => {
  // Two blocks are the bound; by time alone nothing would be due for a minute.
  const { wb, uploads } = scheduler({ uploadFails: [], cleanFails: [] }, undefined, { maxDirtyBytes: 2 * BS, writeDelayMs: 60_000 });
  const tick = () => new Promise((r) => setImmediate(r));
  wb.written(0, wb.nextSeq(), false, Date.now() - 10_000); // written long ago, but not due
  wb.written(1, wb.nextSeq());
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(uploads, [], 'at the bound, no block goes up early: it may still be being written');
  wb.written(1, wb.nextSeq(), true);
  await tick();
  assert.deepEqual(uploads, [1], 'complete: at once');
  wb.written(1, wb.nextSeq());
  await tick();
  assert.deepEqual(uploads, [1]);
  const room = wb.roomFor(5, () => {});
  assert.deepEqual(uploads.slice(1).sort(), [0, 1], 'a held-back writer makes them due now');
  await room;
  wb.close();
});

test('a waiting block keeps its write delay, however quiet; a flush does not wait for it', async () => {
  const { wb, uploads } = scheduler({ uploadFails: [], cleanFails: [] }, undefined, { maxDirtyBytes: 64 * BS, writeDelayMs: 60_000 });
  wb.written(7, wb.nextSeq(), false, Date.now() - 1000);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(uploads, []);
  await wb.flush();
  assert.deepEqual(uploads, [7], 'a flush does not wait for the delay');
  wb.close();
});

test('a block rewritten while it waits waits its delay again, but goes up within MAX_WAIT_DELAYS delays of the write that made it wait', async () => {
  const DELAY = 150;
  const { wb, uploads } = scheduler({ uploadFails: [], cleanFails: [] }, undefined, { maxDirtyBytes: 64 * BS, writeDelayMs: DELAY });
  const first = Date.now();
  let uploadedAt: number | undefined;
  // Rewritten every ~20 ms: never left alone for a whole delay.
  while (Date.now() - first < (MAX_WAIT_DELAYS + 6) * DELAY) {
    wb.written(0, wb.nextSeq());
    if (uploadedAt === undefined && uploads.length > 0) uploadedAt = Date.now();
    if (Date.now() - first < 4 * DELAY) assert.deepEqual(uploads, [], 'a fixed delay would have sent it by now; a rewrite restarts it');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(uploadedAt !== undefined, 'it goes up although the writes never stop');
  assert.ok(uploadedAt - first >= (MAX_WAIT_DELAYS - 1) * DELAY, `not before its longest wait (${uploadedAt - first} ms)`);
  await wb.flush();
  wb.close();
});
