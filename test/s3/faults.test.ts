// The S3 layer (S3Bucket, S3BlockStore) against injected faults: each through the
// fault proxy (test/helpers/fault-proxy.ts) in front of a real s3rver. Transient
// faults are retried and the data comes back right; permanent ones fail at once
// with the right code; corruption never reaches the caller.
import { test, after, beforeEach, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { startS3, useCredentials } from '../helpers/s3.js';
import { startFaultProxy, type FaultAction } from '../helpers/fault-proxy.js';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { S3BlockStore } from '../../dist/store/s3-store.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { parseS3Url } from '../../dist/s3/url.js';
import { S3zError, type ErrorCode } from '../../dist/errors.js';
import { TransientError } from '../../dist/s3/errors.js';
import { silentLogger } from '../../dist/log.js';

const s3 = await startS3();
after(() => s3.stop());
useCredentials(s3);
const proxy = await startFaultProxy(s3.endpoint).catch(async (err: unknown) => {
  await s3.stop();
  throw err;
});
after(() => proxy.stop());

beforeEach(() => {
  proxy.clearRules();
  proxy.setLatency(0);
  proxy.resetCounts();
});

const RETRY = { retries: 4, minDelayMs: 10, maxDelayMs: 100, maxTotalMs: 10_000, firstContactMs: 0 };
const ATTEMPTS = RETRY.retries + 1;
const BLOCK = 256 * 1024;
/** Long enough for s3rver under a loaded test run; the hung-request tests use their own. */
const TIMEOUT_MS = 5000;
const HUNG_TIMEOUT_MS = 1000;

interface Fixture {
  /** Through the proxy. */
  readonly bucket: S3Bucket;
  readonly store: S3BlockStore;
  /** Straight to s3rver: to set up and check what is stored, unseen by the proxy. */
  readonly direct: S3BlockStore;
  readonly keys: BlockKeys;
}

function fixture(t: TestContext, opts: { endpoint?: string; requestTimeoutMs?: number; connectTimeoutMs?: number; retry?: typeof RETRY } = {}): Fixture {
  const loc = parseS3Url(s3.url('faults'));
  const keys = new BlockKeys(loc);
  const config = { ...DEFAULT_S3_CONFIG, retry: opts.retry ?? RETRY, requestTimeoutMs: opts.requestTimeoutMs ?? TIMEOUT_MS, ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}) };
  const bucket = new S3Bucket({ ...config, endpoint: opts.endpoint ?? proxy.endpoint }, loc.bucket, silentLogger);
  const directBucket = new S3Bucket({ ...config, endpoint: s3.endpoint }, loc.bucket, silentLogger);
  t.after(() => {
    bucket.destroy();
    directBucket.destroy();
  });
  const storeConfig = { blockSize: BLOCK, blockCount: 64, readOnly: false };
  return {
    bucket,
    keys,
    store: new S3BlockStore(storeConfig, bucket, keys, silentLogger),
    direct: new S3BlockStore(storeConfig, directBucket, keys, silentLogger),
  };
}

/** A rule's key pattern for exactly one block. */
function only(keys: BlockKeys, index: number): RegExp {
  return new RegExp(`^${keys.key(index).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

function assertSame(got: Buffer | null, expected: Buffer, what: string): void {
  assert.ok(got !== null, `${what}: read returned null (zeros)`);
  assert.equal(got.length, expected.length, `${what}: wrong length`);
  assert.ok(got.equals(expected), `${what}: wrong bytes`);
}

async function assertFails(p: Promise<unknown>, code: ErrorCode): Promise<S3zError> {
  let caught: unknown;
  await p.then(
    (v) => assert.fail(`expected ${code}, got a result: ${v === null ? 'null' : typeof v}`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof S3zError, `expected an S3zError, got ${String(caught)}`);
  assert.equal(caught.code, code, `expected ${code}: ${caught.message}`);
  return caught;
}

// Transient faults: two in a row on the block's key, then the request goes through.
const TRANSIENT: { name: string; action: FaultAction; read: boolean; write: boolean; hung?: boolean }[] = [
  { name: '500 InternalError', action: { status: 500, code: 'InternalError' }, read: true, write: true },
  { name: '503 SlowDown', action: { status: 503, code: 'SlowDown' }, read: true, write: true },
  { name: 'connection reset', action: 'reset', read: true, write: true },
  { name: 'truncated body', action: { truncate: 1000 }, read: true, write: false },
  // Held far longer than the attempt's timeout; the proxy drops it once the client gives up.
  { name: 'hung request', action: { delay: 30_000 }, read: true, write: true, hung: true },
];

for (const f of TRANSIENT) {
  const requestTimeoutMs = f.hung ? HUNG_TIMEOUT_MS : TIMEOUT_MS;
  if (f.read) {
    test(`read: ${f.name} twice, retried, then the right bytes`, async (t) => {
      const { store, bucket, direct, keys } = fixture(t, { requestTimeoutMs });
      const data = randomBytes(BLOCK);
      await direct.write(3, data);
      const rule = proxy.addRule({ method: 'GET', key: only(keys, 3), times: 2, action: f.action });
      const t0 = performance.now();
      assertSame(await store.read(3), data, 'read');
      const ms = performance.now() - t0;
      assert.equal(proxy.fired(rule), 2);
      assert.equal(bucket.stats.retries, 2);
      assert.equal(bucket.stats.get, 3);
      assert.equal(proxy.requests('GET'), 3);
      assert.equal(bucket.stats.bytesIn, BLOCK, 'bytesIn counts only the body that was returned');
      assert.equal(store.stats.corrupt, 0);
      if (f.hung) {
        assert.ok(ms >= 2 * requestTimeoutMs - 50, `two hung attempts ended after ${ms} ms`);
        assert.ok(ms < 10_000, `hung attempts were not cut by the ${requestTimeoutMs} ms timeout (${ms} ms)`);
      }
    });
  }
  if (f.write) {
    test(`write: ${f.name} twice, retried, then stored right`, async (t) => {
      const { store, bucket, direct, keys } = fixture(t, { requestTimeoutMs });
      const data = randomBytes(BLOCK);
      const rule = proxy.addRule({ method: 'PUT', key: only(keys, 5), times: 2, action: f.action });
      await store.write(5, data);
      assert.equal(proxy.fired(rule), 2);
      assert.equal(bucket.stats.retries, 2);
      assert.equal(bucket.stats.put, 3);
      assert.equal(proxy.requests('PUT'), 3);
      assert.equal(bucket.stats.bytesOut, BLOCK, 'bytesOut counts only the upload that succeeded');
      assertSame(await direct.read(5), data, 'stored block');
    });
  }
}

test('delete: 500 InternalError twice, retried, then the block is gone', async (t) => {
  const { store, bucket, direct, keys } = fixture(t);
  await direct.write(7, randomBytes(BLOCK));
  const rule = proxy.addRule({ method: 'DELETE', key: only(keys, 7), times: 2, action: { status: 500 } });
  await store.write(7, null);
  assert.equal(proxy.fired(rule), 2);
  assert.equal(bucket.stats.retries, 2);
  assert.equal(bucket.stats.delete, 3);
  assert.equal(await direct.read(7), null);
});

test('a body corrupted once is retried; the right bytes come back', async (t) => {
  const { store, bucket, direct, keys } = fixture(t);
  const data = randomBytes(BLOCK);
  await direct.write(2, data);
  const rule = proxy.addRule({ method: 'GET', key: only(keys, 2), action: { corrupt: { at: BLOCK / 2, length: 1 } } });
  assertSame(await store.read(2), data, 'read');
  assert.equal(proxy.fired(rule), 1);
  assert.equal(store.stats.corrupt, 1);
  assert.equal(bucket.stats.retries, 1);
  assert.equal(bucket.stats.get, 2);
});

test('a body corrupted every time: ECORRUPT (EIO) after the retries, never data', async (t) => {
  const { store, bucket, direct, keys } = fixture(t);
  await direct.write(4, randomBytes(BLOCK));
  proxy.addRule({ method: 'GET', key: only(keys, 4), times: Infinity, action: 'corrupt' });
  const err = await assertFails(store.read(4), 'ECORRUPT');
  assert.equal(err.errno, 5);
  // Wrong bytes get fewer attempts than the full budget (src/s3/errors.ts), but more than one.
  const attempts = proxy.requests('GET');
  assert.ok(attempts >= 2 && attempts <= ATTEMPTS, `${attempts} attempts`);
  assert.equal(bucket.stats.get, attempts);
  assert.equal(store.stats.corrupt, attempts, 'every attempt was verified and failed');
  assert.equal(bucket.stats.retries, attempts - 1);
});

test('corrupted bodies among many reads in flight: each is retried alone, no wrong bytes go up', async (t) => {
  // Verification is asynchronous (hashed off the main thread): every read must wait
  // for its own body's verdict, and one block's verdict must never apply to another.
  const { store, bucket, direct, keys } = fixture(t);
  const blocks = Array.from({ length: 16 }, () => randomBytes(BLOCK));
  await Promise.all(blocks.map((b, i) => direct.write(i, b)));
  // Every other block is corrupted once, at its first, a middle or its very last byte.
  const at = [0, BLOCK / 2 + 1, BLOCK - 1];
  const rules = blocks.flatMap((_, i) =>
    i % 2 === 0 ? [proxy.addRule({ method: 'GET', key: only(keys, i), action: { corrupt: { at: at[(i / 2) % at.length]!, length: 1 } } })] : [],
  );
  const got = await Promise.all(blocks.map((_, i) => store.read(i)));
  got.forEach((g, i) => assertSame(g, blocks[i]!, `block ${i}`));
  for (const r of rules) assert.equal(proxy.fired(r), 1);
  assert.equal(store.stats.corrupt, rules.length);
  assert.equal(bucket.stats.get, blocks.length + rules.length);
});

test('a body corrupted in its last byte, every time: ECORRUPT, never data', async (t) => {
  const { store, direct, keys } = fixture(t);
  await direct.write(9, randomBytes(BLOCK));
  proxy.addRule({ method: 'GET', key: only(keys, 9), times: Infinity, action: { corrupt: { at: BLOCK - 1, length: 1 } } });
  await assertFails(store.read(9), 'ECORRUPT');
  proxy.clearRules();
  // Nothing of the bad answers stuck (no memoized digest, no cached body): a clean
  // GET now passes.
  assert.ok((await store.read(9)) !== null);
});

test('a GET into the caller\'s reused buffer: a corrupt first attempt, then a good one, passes (no digest memoized across attempts)', async (t) => {
  const { store, direct, keys } = fixture(t);
  const data = randomBytes(BLOCK);
  await direct.write(12, data);
  // Shared memory, as BlockBuffers hands out: hashed in place, off the main thread.
  const into = Buffer.from(new SharedArrayBuffer(BLOCK));
  proxy.addRule({ method: 'GET', key: only(keys, 12), action: { corrupt: { at: 1000, length: 1 } } });
  const got = await store.read(12, { into });
  assert.ok(got !== null && got.equals(data));
  assert.equal(got.buffer, into.buffer, 'the body landed in the caller\'s memory');
  assert.equal(store.stats.corrupt, 1, 'the first attempt was refused');
  // A body of another length never lands in it.
  const small = Buffer.from(new SharedArrayBuffer(BLOCK / 2));
  const other = await store.read(12, { into: small });
  assert.ok(other !== null && other.equals(data) && other.buffer !== small.buffer);
});

test('S3Bucket.get: a verifier that rejects asynchronously is retried, its body never returned', async (t) => {
  const { bucket, direct, keys } = fixture(t);
  const data = randomBytes(BLOCK);
  await direct.write(11, data);
  proxy.addRule({ method: 'GET', key: only(keys, 11), action: 'corrupt' });
  let calls = 0;
  const obj = await bucket.get(keys.key(11), async (o) => {
    calls++;
    await new Promise((r) => setTimeout(r, 5));
    if (!o.body.equals(data)) throw new TransientError('bad body', { code: 'ECORRUPT' });
  });
  assert.equal(calls, 2);
  assert.ok(obj !== null && obj.body.equals(data));
  assert.equal(bucket.stats.retries, 1);
});

test('a body cut every time: ES3 (EIO) after the retries', async (t) => {
  const { store, bucket, direct, keys } = fixture(t);
  await direct.write(4, randomBytes(BLOCK));
  proxy.addRule({ method: 'GET', key: only(keys, 4), times: Infinity, action: { truncate: BLOCK - 1 } });
  const err = await assertFails(store.read(4), 'ES3');
  assert.equal(err.errno, 5);
  assert.equal(bucket.stats.get, ATTEMPTS);
  assert.equal(store.stats.corrupt, 0, 'a short body is a transport failure, not a bad block');
});

test('a persistent 500: ES3 after exactly retries+1 attempts', async (t) => {
  const { store, bucket, direct, keys } = fixture(t);
  await direct.write(1, randomBytes(BLOCK));
  proxy.addRule({ method: 'GET', key: only(keys, 1), times: Infinity, action: { status: 500, code: 'InternalError' } });
  const err = await assertFails(store.read(1), 'ES3');
  assert.equal(err.errno, 5);
  assert.match(err.message, /500/);
  assert.equal(proxy.requests('GET'), RETRY.retries + 1);
  assert.equal(bucket.stats.get, RETRY.retries + 1);
  assert.equal(bucket.stats.retries, RETRY.retries);
});

test('403 InvalidAccessKeyId: EACCESS at once, no retry', async (t) => {
  const { store, bucket } = fixture(t);
  const rule = proxy.addRule({ times: Infinity, action: { status: 403, code: 'InvalidAccessKeyId' } });
  await assertFails(store.read(0), 'EACCESS');
  await assertFails(store.write(0, randomBytes(BLOCK)), 'EACCESS');
  await assertFails(bucket.check(), 'EACCESS');
  assert.equal(proxy.fired(rule), 3);
  assert.deepEqual(proxy.counts.methods, { GET: 1, PUT: 1, HEAD: 1 });
  assert.equal(bucket.stats.retries, 0);
});

test('NoSuchBucket: ENOBUCKET at once, no retry', async (t) => {
  const { store, bucket } = fixture(t);
  const rule = proxy.addRule({ times: Infinity, action: { status: 404, code: 'NoSuchBucket' } });
  const err = await assertFails(store.read(0), 'ENOBUCKET');
  assert.equal(err.errno, 2);
  await assertFails(store.write(0, randomBytes(BLOCK)), 'ENOBUCKET');
  // HeadBucket's 404 has no body to name the error: check() still says ENOBUCKET.
  await assertFails(bucket.check(), 'ENOBUCKET');
  assert.equal(proxy.fired(rule), 3);
  assert.deepEqual(proxy.counts.methods, { GET: 1, PUT: 1, HEAD: 1 });
  assert.equal(bucket.stats.retries, 0);
});

/** A port that was just free: bind, read it, close. */
function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}

test('nothing listening at the endpoint: EUNREACHABLE, in bounded time', async (t) => {
  const port = await freePort();
  const { store, bucket } = fixture(t, { endpoint: `http://127.0.0.1:${port}` });
  const t0 = performance.now();
  const err = await assertFails(store.read(0), 'EUNREACHABLE');
  const ms = performance.now() - t0;
  assert.ok(ms < 15_000, `EUNREACHABLE took ${ms} ms`);
  assert.equal(err.errno, 5);
  assert.match(err.message, /ECONNREFUSED/);
  // An endpoint that never answered is more likely a wrong URL than an outage: here
  // (firstContactMs 0) the first refusal is the last.
  assert.equal(bucket.stats.get, 1, 'a refused first contact gets the short budget');
  await assertFails(bucket.check(), 'EUNREACHABLE');
  // The budget is time: retries go on until it is spent, then stop (here long before the 50 allowed).
  const slow = fixture(t, { endpoint: `http://127.0.0.1:${port}`, retry: { ...RETRY, retries: 50, firstContactMs: 300 } });
  const t1 = performance.now();
  await assertFails(slow.store.read(0), 'EUNREACHABLE');
  const spent = performance.now() - t1;
  assert.ok(slow.bucket.stats.get >= 3 && slow.bucket.stats.get < 51, `${slow.bucket.stats.get} attempts`);
  assert.ok(spent >= 300 && spent < 1500, `stopped after ${spent} ms`);
});

test('an endpoint where no connection opens (a firewall that drops): EUNREACHABLE after the short budget, saying so', async (t) => {
  // A listener that never accepts: a child that listens with a backlog of 1 and then blocks
  // its event loop. Once its accept queue is full, the kernel drops new SYNs, as a
  // firewall does, and connects time out.
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', `
    require('net').createServer().listen(${port}, '127.0.0.1', 1, () => {
      process.stdout.write('listening\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: net.Socket[] = [];
  t.after(() => {
    for (const f of fillers) f.destroy();
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the listener exited (${code})`)));
  });
  for (let i = 0; i < 3; i++) {
    const f = net.connect(port, '127.0.0.1');
    f.on('error', () => {});
    fillers.push(f);
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { store, bucket } = fixture(t, { endpoint: `http://127.0.0.1:${port}`, connectTimeoutMs: 400 });
  const t0 = performance.now();
  const err = await assertFails(store.read(0), 'EUNREACHABLE');
  const ms = performance.now() - t0;
  assert.match(err.message, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(no connection within 400 ms\)/);
  assert.equal(bucket.stats.get, 1, 'a first contact that never connects gets the short budget');
  assert.ok(ms < 400 * 2, `took ${ms} ms`);
});

test('an endpoint that answered once and then refuses is in an outage: the full retries', async (t) => {
  // A TCP forwarder to the proxy that can stop listening (and drop its connections).
  const port = await freePort();
  const target = new URL(proxy.endpoint);
  const sockets = new Set<net.Socket>();
  const forwarder = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => forwarder.listen(port, '127.0.0.1', resolve));
  t.after(() => {
    forwarder.close();
    for (const s of sockets) s.destroy();
  });
  const { store, bucket } = fixture(t, { endpoint: `http://127.0.0.1:${port}` });
  assert.equal(await store.read(1), null, 'the endpoint answers (the block is absent)');
  await new Promise<void>((resolve) => {
    forwarder.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
  const before = bucket.stats.get;
  const err = await assertFails(store.read(0), 'EUNREACHABLE');
  assert.match(err.message, /ECONNREFUSED/);
  assert.equal(bucket.stats.get - before, ATTEMPTS, 'an outage gets every retry');
});

test('stale read: the proxy serves the previous version, and the bottom layer cannot tell', async (t) => {
  const { store, bucket, keys } = fixture(t);
  const v1 = randomBytes(BLOCK);
  const v2 = randomBytes(BLOCK);
  await store.write(6, v1);
  await store.write(6, v2);
  const rule = proxy.addRule({ method: 'GET', key: only(keys, 6), action: 'stale' });
  // v1 carries its own valid checksum: only a guard above knows v2 is expected.
  assertSame(await store.read(6), v1, 'stale read');
  assert.equal(proxy.fired(rule), 1);
  assert.equal(store.stats.corrupt, 0);
  assert.equal(bucket.stats.retries, 0);
  assertSame(await store.read(6), v2, 'read after the stale one');

  // Zeroing deletes the object: a stale read still finds the last data.
  await store.write(6, null);
  proxy.addRule({ method: 'GET', key: only(keys, 6), action: 'stale' });
  assertSame(await store.read(6), v2, 'stale read after a delete');
  assert.equal(await store.read(6), null);

  // A block written once was absent before: a stale read finds nothing.
  await store.write(9, v1);
  const fresh = proxy.addRule({ method: 'GET', key: only(keys, 9), action: 'stale' });
  assert.equal(await store.read(9), null);
  assert.equal(proxy.fired(fresh), 1);
  assertSame(await store.read(9), v1, 'read after the stale one');
});
