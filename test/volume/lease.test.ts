// The write lease on a real s3rver: one writer at a time, even when two mounts
// try at the same instant (s3rver has no conditional writes); release keeps the
// token; a stale lease of a dead process on this host is taken over.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import type { S3Bucket } from '../../dist/s3/bucket.js';
import { parseS3Url, keyUnder } from '../../dist/s3/url.js';
import { LeaseHolder, readLease, readLeaseObject } from '../../dist/volume/lease.js';
import { md5 } from '../../dist/store/checksum.js';
import { silentLogger } from '../../dist/log.js';
import { startS3, testBucket, type TestS3 } from '../helpers/s3.js';

let s3: TestS3;
let bucket: S3Bucket;
before(async () => {
  s3 = await startS3();
  bucket = testBucket(s3);
});
after(async () => {
  bucket?.destroy();
  await s3?.stop();
});

const opts = (holder: string, force = false) => ({ holder, ttlMs: 60_000, force, settleMs: 300 });

test('two mounts taking the lease at once: exactly one wins, the other is refused', async () => {
  const loc = parseS3Url(s3.url('race'));
  const results = await Promise.allSettled([
    LeaseHolder.acquire(bucket, loc, opts('a'), silentLogger),
    LeaseHolder.acquire(bucket, loc, opts('b'), silentLogger),
  ]);
  const won = results.filter((r): r is PromiseFulfilledResult<LeaseHolder> => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1, 'one winner');
  assert.equal(lost.length, 1, 'one refused');
  assert.equal((lost[0]?.reason as { code?: string }).code, 'ELEASE');
  const live = await readLease(bucket, loc);
  assert.equal(live?.token, won[0]?.value.token);
  await won[0]?.value.release();
});

test('a live lease refuses a second writer by name; --force breaks it; release keeps the token', async () => {
  const loc = parseS3Url(s3.url('live'));
  const first = await LeaseHolder.acquire(bucket, loc, opts('first writer'), silentLogger);
  await assert.rejects(LeaseHolder.acquire(bucket, loc, opts('second'), silentLogger), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ELEASE');
    assert.match(err.message, /mounted read-write by first writer/);
    return true;
  });
  const forced = await LeaseHolder.acquire(bucket, loc, opts('second', true), silentLogger);
  assert.equal(forced.previousToken, first.token);
  await first.release(); // must not clobber the lease that was taken from it
  assert.equal((await readLease(bucket, loc))?.token, forced.token);
  await forced.release();
  assert.equal(await readLease(bucket, loc), null, 'released: free');
  assert.equal((await readLeaseObject(bucket, loc))?.token, forced.token, 'the token stays for the next mount');
});

test('a live lease of a dead process on this host is taken over without --force', async () => {
  const loc = parseS3Url(s3.url('dead'));
  const body = Buffer.from(JSON.stringify({ holder: 'crashed', token: 't-dead', expires: new Date(Date.now() + 60_000).toISOString(), host: hostname(), pid: 2 ** 22 + 12345 }));
  await bucket.put(keyUnder(loc, 'lease'), body, { md5: md5(body) });
  const taken = await LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger);
  assert.equal(taken.previousToken, 't-dead');
  await taken.release();
  // The same lease on another host is live: refused.
  const other = Buffer.from(JSON.stringify({ holder: 'elsewhere', token: 't2', expires: new Date(Date.now() + 60_000).toISOString(), host: 'another-host', pid: 2 ** 22 + 12345 }));
  await bucket.put(keyUnder(loc, 'lease'), other, { md5: md5(other) });
  await assert.rejects(LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger), /mounted read-write by elsewhere/);
});
