// src/store/checksum.ts and hash-pool.ts: the async SHA-256 (sha256Of) is right,
// shares one memo with the sync API (a block is hashed once across layers), and
// runs off the main thread, several at once; so does `put`'s MD5 (md5Of); the pool
// survives losing its workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { md5Of, sha256, sha256Of, sha256Raw } from '../../dist/store/checksum.js';
import { HashPool } from '../../dist/store/hash-pool.js';

const plain = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

test('sha256Of: the SHA-256 of buffers of every size, small and large', async () => {
  for (const n of [0, 1, 4096, 65535, 65536, 65537, 1 << 20, (4 << 20) + 3]) {
    const b = randomBytes(n);
    assert.deepEqual(await sha256Of(b), plain(b), `${n} bytes`);
  }
  // A view into a larger buffer hashes only its own bytes.
  const big = randomBytes(3 << 20);
  const view = big.subarray(1 << 20, 2 << 20);
  assert.deepEqual(await sha256Of(view), plain(view));
});

test('sha256Of: memoized per Buffer, shared with the sync API, one digest per buffer', async (t) => {
  const digest = t.mock.method(HashPool.prototype, 'sha256');
  const b = randomBytes(1 << 20);
  const p1 = sha256Of(b);
  const p2 = sha256Of(b);
  assert.equal(p1, p2, 'a hash in flight is shared');
  const d = await p1;
  assert.equal(await sha256Of(b), d, 'the same digest object once known');
  assert.equal(sha256Raw(b), d, 'the sync API finds it');
  assert.equal(sha256(b), d.toString('base64'));
  assert.equal(digest.mock.callCount(), 1);

  // And the other way: a digest the sync API computed is not computed again.
  const c = randomBytes(1 << 20);
  const s = sha256Raw(c);
  assert.equal(await sha256Of(c), s);
  assert.equal(digest.mock.callCount(), 1);

  // Equal content in another buffer object is another hash (a buffer read is a new object).
  const copy = Buffer.from(b);
  assert.deepEqual(await sha256Of(copy), d);
  assert.equal(digest.mock.callCount(), 2);
});

test('sha256Of: hashes run off the main thread, several at once', async (t) => {
  const digest = t.mock.method(HashPool.prototype, 'sha256');
  const blocks = Array.from({ length: 8 }, () => randomBytes(8 << 20));
  let settled = 0;
  const all = Promise.all(blocks.map((b) => sha256Of(b).then((d) => (settled++, d))));
  // Every hash was handed off before any finished: none waits for another.
  assert.equal(digest.mock.callCount(), blocks.length);
  assert.equal(settled, 0);
  // 64 MiB take tens of ms to hash: the event loop turns meanwhile.
  let turned = false;
  await new Promise<void>((r) => setImmediate(() => ((turned = true), r())));
  assert.ok(turned);
  assert.ok(settled < blocks.length, `all ${settled} hashes were done before the loop turned: not off the main thread`);
  const got = await all;
  got.forEach((d, i) => assert.deepEqual(d, plain(blocks[i]!)));
});

test('md5Of: the MD5 of buffers of every size, large ones hashed off the main thread, several at once', async (t) => {
  const md5 = (b: Buffer): Buffer => createHash('md5').update(b).digest();
  for (const n of [0, 1, 65535, 65536, 1 << 20, (4 << 20) + 3]) {
    const b = randomBytes(n);
    assert.deepEqual(await md5Of(b), md5(b), `${n} bytes`);
  }
  const shared = Buffer.from(new SharedArrayBuffer(2 << 20), 5, 1 << 20);
  shared.set(randomBytes(shared.length));
  assert.deepEqual(await md5Of(shared), md5(shared), 'a view of shared memory, read in place');
  const offThread = t.mock.method(HashPool.prototype, 'md5');
  // Blocks of 2 MiB (staged) and of 8 MiB in shared memory (read in place, past the staging limit).
  const blocks = Array.from({ length: 16 }, (_, i) => {
    if (i % 2 === 0) return randomBytes(2 << 20);
    const b = Buffer.from(new SharedArrayBuffer(8 << 20));
    b.set(randomBytes(b.length));
    return b;
  });
  let settled = 0;
  const all = Promise.all(blocks.map((b) => md5Of(b).then((d) => (settled++, d))));
  assert.equal(offThread.mock.callCount(), blocks.length, 'every block went to the pool');
  // A digest made on this thread settles before the loop turns; a worker's answer comes
  // through the loop's poll phase, after it.
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(settled, 0, `${settled} hashes were done before the loop turned: not off the main thread`);
  (await all).forEach((d, i) => assert.deepEqual(d, md5(blocks[i]!)));
});

test('HashPool: warm() boots every worker ahead of the first job, and an idle warm pool lets the process exit', async () => {
  const pool = new HashPool({ workers: 2 });
  assert.equal(pool.workers, 0, 'workers start on demand');
  pool.warm();
  assert.equal(pool.workers, 2);
  const b = randomBytes(1 << 20);
  assert.deepEqual(await pool.sha256(b), plain(b));
  assert.equal(pool.workers, 2, 'the job went to a warm worker');
  await pool.close();
  assert.equal(pool.workers, 0);
  // A script file, not --input-type (which its workers would inherit, and fail to start with).
  const dir = mkdtempSync(path.join(tmpdir(), 's3z-warm-'));
  const script = path.join(dir, 'warm.mjs');
  const url = new URL('../../dist/store/hash-pool.js', import.meta.url).href;
  writeFileSync(
    script,
    `const { HashPool } = await import(${JSON.stringify(url)});
const pool = new HashPool({ workers: 2 });
pool.warm();
await new Promise((r) => setTimeout(r, 500));
if (pool.workers !== 2) process.exit(3);`,
  );
  const child = spawnSync(process.execPath, [script], { timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(child.error, undefined, 'the process exited on its own, its workers booted and idle');
  assert.equal(child.status, 0, child.stderr.toString());
});

test('HashPool: more jobs than staging slots, sizes mixed, all right; close() mid-flight loses none', async () => {
  const pool = new HashPool({ workers: 2, perWorker: 1, maxStaged: 2 << 20 });
  const inputs = [1 << 20, 3, 65536, (2 << 20) + 1, 1 << 20, 777_777, 2 << 20, 1].map((n) => randomBytes(n));
  const got = await Promise.all(inputs.map((b) => pool.sha256(b)));
  got.forEach((d, i) => assert.deepEqual(d, plain(inputs[i]!), `input ${i}`));
  // A staging buffer is reused only after its answer: hashing again gives the same.
  const again = await Promise.all(inputs.map((b) => pool.sha256(b)));
  again.forEach((d, i) => assert.deepEqual(d, plain(inputs[i]!), `input ${i} again`));
  const late = inputs.map((b) => pool.sha256(b));
  const lateMd5 = inputs.map((b) => pool.md5(b));
  await pool.close();
  (await Promise.all(late)).forEach((d, i) => assert.deepEqual(d, plain(inputs[i]!), `input ${i} after close`));
  // MD5, which WebCrypto lacks, is finished here.
  (await Promise.all(lateMd5)).forEach((d, i) => assert.deepEqual(d, createHash('md5').update(inputs[i]!).digest(), `MD5 of input ${i} after close`));
  assert.deepEqual(await pool.md5(inputs[0]!), createHash('md5').update(inputs[0]!).digest(), 'MD5 on a closed pool');
});

test('HashPool: shared-memory inputs are hashed in place, views and offsets respected, mixed with staged ones', async () => {
  const pool = new HashPool({ workers: 2, perWorker: 1 });
  const sab = new SharedArrayBuffer(3 << 20);
  const whole = Buffer.from(sab);
  whole.set(randomBytes(whole.length));
  const inputs = [whole.subarray(0, 1 << 20), randomBytes(1 << 20), whole.subarray((1 << 20) + 5, (3 << 20) - 7), Buffer.from(sab, 17, 100_000)];
  const got = await Promise.all(inputs.map((b) => pool.sha256(b)));
  got.forEach((d, i) => assert.deepEqual(d, plain(inputs[i]!), `input ${i}`));
  // Past the pool's staging limit (blocks of 8 MiB and more), shared memory is still read in
  // place by the workers; once the pool is closed, WebCrypto hashes instead, and it refuses
  // shared memory, so it must get a private copy.
  const big = Buffer.from(new SharedArrayBuffer(5 << 20));
  big.set(randomBytes(big.length));
  assert.deepEqual(await sha256Of(big), plain(big));
  const late = pool.sha256(whole);
  await pool.close();
  assert.deepEqual(await late, plain(whole));
  assert.deepEqual(await pool.sha256(whole.subarray(3)), plain(whole.subarray(3)), 'after close');
});

test('BlockBuffers: memory used again comes back as a new Buffer object, so no digest is memoized for old bytes', async () => {
  const { BlockBuffers } = await import('../../dist/store/block-buffers.js');
  const pool = new BlockBuffers(1 << 20, 2);
  const a = pool.acquire();
  a.fill(1);
  const digestA = await sha256Of(a);
  assert.ok(a.buffer instanceof SharedArrayBuffer);
  pool.release(a);
  const b = pool.acquire();
  assert.equal(b.buffer, a.buffer, 'the same memory');
  assert.notEqual(b, a, 'a new object');
  b.fill(2);
  const digestB = await sha256Of(b);
  assert.deepEqual(digestB, plain(Buffer.alloc(1 << 20, 2)));
  assert.notDeepEqual(digestB, digestA);
  // More holders than it keeps: extra memory is allocated, and dropped on release.
  const c = pool.acquire();
  const d = pool.acquire();
  assert.equal(new Set([b.buffer, c.buffer, d.buffer]).size, 3);
  for (const x of [b, c, d]) pool.release(x);
  assert.equal(pool.idle, 2);
  assert.throws(() => pool.release(b), /did not lend/, 'twice');
  assert.throws(() => pool.release(Buffer.alloc(1 << 20)), /did not lend/);
  // Big blocks: idle memory stays bounded (64 MiB), but one is always kept.
  const big = new BlockBuffers(32 << 20, 16);
  const held = [big.acquire(), big.acquire(), big.acquire()];
  for (const x of held) big.release(x);
  assert.equal(big.idle, 2);
  const huge = new BlockBuffers(128 << 20, 16);
  huge.release(huge.acquire());
  assert.equal(huge.idle, 1);
});

test('BlockBuffers.lend: the buffer comes back to the pool whether its user returns or throws', async () => {
  const { BlockBuffers } = await import('../../dist/store/block-buffers.js');
  const pool = new BlockBuffers(4096, 2);
  let lent: Buffer | undefined;
  assert.equal(await pool.lend(async (buf) => ((lent = buf), buf.length)), 4096);
  assert.equal(pool.idle, 1, 'given back after a return');
  assert.throws(() => pool.release(lent!), /did not lend/, 'and not lent any more');
  await assert.rejects(pool.lend(async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(pool.idle, 1, 'given back after a throw, the same memory used again');
});
