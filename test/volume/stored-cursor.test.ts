// The walk of a volume's LIST (stored-cursor.ts) alongside a counting pass (inventory.ts):
// the pages the count kept are replayed, only what follows them is listed again, and
// the walk sees the same blocks, in order, whichever way each page came. On a real S3
// server (s3rver pages at 1000 keys, as S3 does), behind a proxy that counts the LISTs.
// A listing still running in the background (get's) hands the walk its pages as they come.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pMap from 'p-map';
import { parseS3Url, keyUnder } from '../../dist/s3/url.js';
import type { S3Bucket } from '../../dist/s3/bucket.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { countStored, BackgroundListing } from '../../dist/volume/inventory.js';
import { StoredCursor } from '../../dist/volume/stored-cursor.js';
import { startS3, testBucket, type TestS3 } from '../helpers/s3.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';

let s3: TestS3;
let proxy: FaultProxy;
let bucket: S3Bucket;
let keys: BlockKeys;
/** Stored blocks: every third index below 4500, so 1500 keys over two pages. */
const STORED = Array.from({ length: 1500 }, (_, i) => i * 3);
const BLOCKS = 4500;

before(async () => {
  s3 = await startS3();
  proxy = await startFaultProxy(s3.endpoint, { record: true });
  bucket = testBucket(s3, { endpoint: proxy.endpoint });
  const loc = parseS3Url(s3.url('cursor'));
  keys = new BlockKeys(loc);
  const body = Buffer.from('x');
  await pMap(STORED, (i) => bucket.put(keys.key(i), body, {}), { concurrency: 16 });
  // A stray key among the blocks: listed and counted, never walked as a block.
  await bucket.put(`${keys.prefix}stray`, body, {});
  // A key after the blocks' prefix: never listed.
  await bucket.put(keyUnder(loc, 'zz'), body, {});
});
after(async () => {
  bucket?.destroy();
  await proxy?.stop();
  await s3?.stop();
});

/** LIST requests (GETs of the bucket) since the last reset. */
const lists = (): number => proxy.recorded('GET').filter((r) => r.key === '').length;

/** Walks every block with at(), as get and put do; returns the stored indexes met and the LISTs it sent. */
async function walk(cursor: StoredCursor): Promise<{ found: number[]; lists: number }> {
  proxy.resetCounts();
  const found: number[] = [];
  for (let i = 0; i < BLOCKS; i++) {
    const b = await cursor.at(i);
    if (b !== undefined) {
      assert.equal(b.index, i);
      assert.equal(b.key, keys.key(i));
      found.push(i);
    }
  }
  return { found, lists: lists() };
}

test('count: every stored key and its bytes, stray keys too, in 1000-key pages', async () => {
  proxy.resetCounts();
  assert.deepEqual(await countStored(bucket, keys), { blocks: 1501, bytes: 1501 });
  assert.equal(lists(), 2);
});

test('a walk after a complete listing sends no LIST at all', async () => {
  const listed = new BackgroundListing(bucket, keys);
  assert.deepEqual(await listed.totals, { blocks: 1501, bytes: 1501 });
  const { found, lists } = await walk(new StoredCursor(bucket, keys, listed));
  assert.deepEqual(found, STORED);
  assert.equal(lists, 0);
});

test('a listing that kept only its first page (the walk behind it): the walk lists the rest from where it ends', async () => {
  const listed = new BackgroundListing(bucket, keys, 1000);
  // The walk starts once the count is done: page 1 waited for it, page 2 did not fit.
  assert.deepEqual(await listed.totals, { blocks: 1501, bytes: 1501 }, 'the count still covers everything');
  const { found, lists } = await walk(new StoredCursor(bucket, keys, listed));
  assert.deepEqual(found, STORED);
  assert.equal(lists, 1);
  assert.match(proxy.recorded('GET').find((r) => r.key === '')?.query ?? '', /start-after=/);
});

test('nothing kept, or no listing: the walk lists everything itself', async () => {
  const listed = new BackgroundListing(bucket, keys, 0);
  await listed.totals;
  for (const cursor of [new StoredCursor(bucket, keys, listed), new StoredCursor(bucket, keys)]) {
    const { found, lists } = await walk(cursor);
    assert.deepEqual(found, STORED);
    assert.equal(lists, 2);
  }
});

test('from(): every stored block from an index on, after a replayed page and a listed one', async () => {
  const listed = new BackgroundListing(bucket, keys, 1000);
  await listed.totals;
  const cursor = new StoredCursor(bucket, keys, listed);
  assert.equal(await cursor.at(2998), undefined, '2998 is not stored');
  const rest: number[] = [];
  for await (const b of cursor.from(2999)) rest.push(b.index ?? -1);
  assert.deepEqual(rest, STORED.filter((i) => i >= 2999));
});

test('a background listing: the walk starts at its first page, before the count ends, and sends no LIST of its own', async () => {
  proxy.resetCounts();
  // The count's second page is held: the walk must not wait for it to begin.
  proxy.addRule({ name: 'hold page 2', method: 'GET', key: /^$/, query: /continuation-token/, times: 1, action: { delay: 1500 } });
  const listing = new BackgroundListing(bucket, keys);
  let counted = false;
  void listing.totals.then(() => (counted = true));
  const cursor = new StoredCursor(bucket, keys, listing);
  const t0 = Date.now();
  assert.equal((await cursor.at(0))?.index, 0);
  assert.ok(Date.now() - t0 < 1000, `the first block took ${Date.now() - t0} ms`);
  assert.equal(counted, false, 'the count is still running');
  const found = [0];
  for (let i = 1; i < BLOCKS; i++) if ((await cursor.at(i)) !== undefined) found.push(i);
  assert.deepEqual(found, STORED);
  assert.deepEqual(await listing.totals, { blocks: 1501, bytes: 1501 });
  assert.equal(lists(), 2, 'one LIST pass in all');
});

test('stop() ends a background count after the page in flight: an interrupted get does not wait for the rest of the LIST', async () => {
  proxy.resetCounts();
  const listing = new BackgroundListing(bucket, keys);
  listing.stop();
  const totals = await listing.totals;
  assert.equal(lists(), 1, 'no page asked for after stop()');
  assert.ok(totals.blocks <= 1000, `counted ${totals.blocks}`);
});
