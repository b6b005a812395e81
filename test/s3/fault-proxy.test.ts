// The fault proxy itself (test/helpers/fault-proxy.ts), in front of the test
// server (s3rver, or RGW which checks every signature), driven with plain HTTP
// requests signed by hand (test/helpers/sigv4.ts) so that what the client receives
// is observed byte for byte; DeleteObjects goes through S3Bucket. The proxy must
// forward a signed request untouched (Host included) for RGW to accept it.
import { test, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startS3, useCredentials } from '../helpers/s3.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { signV4, credentialsFrom } from '../helpers/sigv4.js';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { parseS3Url } from '../../dist/s3/url.js';
import { silentLogger } from '../../dist/log.js';
import { md5 } from '../../dist/store/checksum.js';

const s3 = await startS3();
after(() => s3.stop());
useCredentials(s3);
const proxy = await startFaultProxy(s3.endpoint).catch(async (err: unknown) => {
  await s3.stop();
  throw err;
});
after(() => proxy.stop());

const creds = credentialsFrom(s3.env);

// Idle sockets go before s3rver's 5 s keep-alive timeout can race a request.
const agent = new http.Agent({ keepAlive: true, timeout: 3000 });
after(() => agent.destroy());

beforeEach(() => {
  proxy.clearRules();
  proxy.setLatency(0);
  proxy.resetCounts();
});

interface Reply {
  /** undefined: no answer at all. */
  status: number | undefined;
  headers: http.IncomingHttpHeaders;
  /** What arrived, even when the body was cut. */
  body: Buffer;
  error: (Error & { code?: string }) | undefined;
  ms: number;
}

/** One plain, signed HTTP request; always resolves, with what arrived and the error, if any. */
function call(endpoint: string, method: string, key: string, opts: { body?: Buffer; headers?: Record<string, string>; giveUpMs?: number } = {}): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const reply: Reply = { status: undefined, headers: {}, body: Buffer.alloc(0), error: undefined, ms: 0 };
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (err?: Error): void => {
      if (settled) return;
      settled = true;
      reply.error = err;
      reply.body = Buffer.concat(chunks);
      reply.ms = performance.now() - t0;
      resolve(reply);
    };
    const url = new URL(`/${s3.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`, endpoint);
    const signed = signV4(creds, { method, url, body: opts.body, ...(opts.headers ? { headers: opts.headers } : {}) });
    const req = http.request(url, { method, agent, headers: { ...(opts.body ? { 'content-length': String(opts.body.length) } : {}), ...signed } });
    if (opts.giveUpMs !== undefined) req.setTimeout(opts.giveUpMs, () => req.destroy(new Error('client gave up')));
    req.on('response', (res) => {
      reply.status = res.statusCode;
      reply.headers = res.headers;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done());
      res.on('error', (e) => done(e));
      res.on('close', () => done(res.complete ? undefined : new Error('response cut')));
    });
    req.on('error', (e) => done(e));
    req.end(opts.body);
  });
}

/** The reply carried exactly `expected`, whole, without error. */
function assertBody(r: Reply, expected: Buffer, what = 'body'): void {
  const got = `status ${r.status}, ${r.body.length} bytes, error ${r.error?.message ?? 'none'}`;
  assert.ok(r.status !== undefined && r.status < 300 && r.error === undefined, `${what}: ${got}`);
  assert.ok(r.body.equals(expected), `${what}: wrong content (${got}, expected ${expected.length} bytes)`);
}

/** A key prefix no other test uses. */
function prefix(): string {
  return parseS3Url(s3.url('fp')).prefix;
}

test('forwards objects byte-exact both ways, metadata included, in parallel', async () => {
  const p = prefix();
  const objects = Array.from({ length: 8 }, (_, i) => ({ key: `${p}/obj-${i}`, data: randomBytes(1024 * 1024) }));
  const puts = await Promise.all(objects.map((o, i) => call(proxy.endpoint, 'PUT', o.key, { body: o.data, headers: { 'x-amz-meta-n': String(i) } })));
  for (const r of puts) assert.equal(r.status, 200, r.body.toString());
  // Read through the proxy: the download direction.
  const gets = await Promise.all(objects.map((o) => call(proxy.endpoint, 'GET', o.key)));
  gets.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.error, undefined);
    assertBody(r, objects[i]?.data ?? Buffer.alloc(0), `object ${i} differs through the proxy`);
    assert.equal(r.headers['x-amz-meta-n'], String(i));
    assert.equal(r.headers['content-length'], String(1024 * 1024));
  });
  // Read straight from the server: the upload direction.
  const direct = await Promise.all(objects.map((o) => call(s3.endpoint, 'GET', o.key)));
  direct.forEach((r, i) => assertBody(r, objects[i]?.data ?? Buffer.alloc(0), `object ${i} stored wrong`));
  assert.equal(proxy.requests('PUT'), 8);
  assert.equal(proxy.requests('GET'), 8);
  assert.equal(proxy.requests(), 16);
});

test('adds the configured latency before every request', async (t) => {
  const p = await startFaultProxy(s3.endpoint, { latencyMs: 300 });
  t.after(() => p.stop());
  const key = `${prefix()}/lat`;
  const put = await call(p.endpoint, 'PUT', key, { body: Buffer.from('x') });
  assert.equal(put.status, 200);
  // Timers may fire up to a millisecond early against performance.now().
  assert.ok(put.ms >= 298, `PUT took ${put.ms} ms with 300 ms latency`);
  p.setLatency(0);
  const fast = await call(p.endpoint, 'GET', key);
  assert.equal(fast.status, 200);
  assert.ok(fast.ms < 300, `GET took ${fast.ms} ms with no latency`);
  p.setLatency(600);
  const slow = await call(p.endpoint, 'GET', key);
  assert.equal(slow.status, 200);
  assert.ok(slow.ms >= 598, `GET took ${slow.ms} ms with 600 ms latency`);
  // Faulted answers wait too.
  p.addRule({ method: 'GET', action: { status: 500 } });
  const faulted = await call(p.endpoint, 'GET', key);
  assert.equal(faulted.status, 500);
  assert.ok(faulted.ms >= 598, `faulted GET took ${faulted.ms} ms with 600 ms latency`);
});

test('status: answers an S3 XML error without forwarding, `times` times, matching method and key', async () => {
  const p = prefix();
  const key = `${p}/status-obj`;
  const data = randomBytes(4096);
  const rule = proxy.addRule({ method: 'put', key: /status-obj$/, times: 2, action: { status: 503, code: 'SlowDown' } });
  // Another key and another method pass.
  assert.equal((await call(proxy.endpoint, 'PUT', `${p}/other`, { body: data })).status, 200);
  assert.equal((await call(proxy.endpoint, 'GET', key)).status, 404);
  assert.equal(proxy.fired(rule), 0);

  for (let i = 0; i < 2; i++) {
    const r = await call(proxy.endpoint, 'PUT', key, { body: data });
    assert.equal(r.status, 503);
    assert.match(String(r.headers['content-type']), /xml/);
    assert.match(r.body.toString(), /<Error><Code>SlowDown<\/Code><Message>[^<]+<\/Message>/);
    assert.equal((await call(s3.endpoint, 'GET', key)).status, 404, 'a faulted PUT reached the server');
  }
  assert.equal(proxy.fired(rule), 2);
  const third = await call(proxy.endpoint, 'PUT', key, { body: data });
  assert.equal(third.status, 200);
  assertBody(await call(s3.endpoint, 'GET', key), data);
  assert.equal(proxy.fired(rule), 2);

  // Default code and message from the status; a named rule; HEAD answers have no body.
  proxy.addRule({ name: 'denied', times: Infinity, action: { status: 403, code: 'InvalidAccessKeyId' } });
  const denied = await call(proxy.endpoint, 'GET', key);
  assert.equal(denied.status, 403);
  assert.match(denied.body.toString(), /<Code>InvalidAccessKeyId<\/Code><Message>The AWS Access Key Id/);
  const head = await call(proxy.endpoint, 'HEAD', key);
  assert.equal(head.status, 403);
  assert.equal(head.body.length, 0);
  assert.equal(proxy.fired('denied'), 2);
  proxy.clearRules();
  proxy.addRule({ action: { status: 500 } });
  assert.match((await call(proxy.endpoint, 'GET', key)).body.toString(), /<Code>InternalError<\/Code>/);
  assert.equal((await call(proxy.endpoint, 'GET', key)).status, 200);
});

test('reset: the connection dies without an answer and nothing is forwarded', async () => {
  const key = `${prefix()}/reset-obj`;
  const data = randomBytes(256 * 1024);
  const rule = proxy.addRule({ method: 'PUT', action: 'reset' });
  const r = await call(proxy.endpoint, 'PUT', key, { body: data });
  assert.equal(r.status, undefined);
  assert.ok(r.error, 'the client saw no error');
  assert.match(String(r.error.code), /ECONNRESET|EPIPE/);
  assert.equal((await call(s3.endpoint, 'GET', key)).status, 404, 'a reset PUT reached the server');
  assert.equal(proxy.fired(rule), 1);
  assert.equal((await call(proxy.endpoint, 'PUT', key, { body: data })).status, 200);
  const get = await call(proxy.endpoint, 'GET', key);
  assertBody(get, data);
});

test('truncate: cuts the body after N bytes, keeps Content-Length, closes the connection', async () => {
  const key = `${prefix()}/trunc-obj`;
  const data = randomBytes(1024 * 1024);
  assert.equal((await call(proxy.endpoint, 'PUT', key, { body: data })).status, 200);
  for (const n of [100_000, 0]) {
    proxy.addRule({ method: 'GET', action: { truncate: n } });
    const r = await call(proxy.endpoint, 'GET', key);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(data.length));
    assert.equal(r.body.length, n);
    assert.ok(r.body.equals(data.subarray(0, n)), 'the bytes sent are not the first n');
    assert.ok(r.error, `a body cut at ${n} bytes ended cleanly`);
  }
  // A body shorter than N goes out whole.
  proxy.addRule({ method: 'GET', action: { truncate: 2 * data.length } });
  const whole = await call(proxy.endpoint, 'GET', key);
  assert.equal(whole.error, undefined);
  assertBody(whole, data);
});

test('corrupt: flips the chosen bytes, same length, every other byte intact', async () => {
  const key = `${prefix()}/corrupt-obj`;
  const data = randomBytes(1024 * 1024);
  assert.equal((await call(proxy.endpoint, 'PUT', key, { body: data })).status, 200);
  const differing = (a: Buffer, b: Buffer): number[] => {
    const out: number[] = [];
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
    return out;
  };
  proxy.addRule({ method: 'GET', action: 'corrupt' });
  const first = await call(proxy.endpoint, 'GET', key);
  assert.equal(first.status, 200);
  assert.equal(first.error, undefined);
  assert.equal(first.body.length, data.length);
  assert.deepEqual(differing(first.body, data), [0]);
  assert.equal(first.body[0], (data[0] ?? 0) ^ 0xff);

  // A range that straddles the proxy's read chunks.
  proxy.addRule({ method: 'GET', action: { corrupt: { at: 65_535, length: 3 } } });
  const mid = await call(proxy.endpoint, 'GET', key);
  assert.equal(mid.body.length, data.length);
  assert.deepEqual(differing(mid.body, data), [65_535, 65_536, 65_537]);

  const clean = await call(proxy.endpoint, 'GET', key);
  assertBody(clean, data);
  assertBody(await call(s3.endpoint, 'GET', key), data, 'corruption reached the stored object');
});

test('delay: holds a request then forwards it; a client that gave up is never forwarded', async () => {
  const p = prefix();
  const data = randomBytes(64 * 1024);
  proxy.addRule({ method: 'PUT', key: /held$/, action: { delay: 400 } });
  const held = await call(proxy.endpoint, 'PUT', `${p}/held`, { body: data });
  assert.equal(held.status, 200);
  assert.ok(held.ms >= 398, `held PUT answered after ${held.ms} ms`);
  assertBody(await call(s3.endpoint, 'GET', `${p}/held`), data);

  proxy.addRule({ method: 'PUT', key: /abandoned$/, action: { delay: 500 } });
  const abandoned = await call(proxy.endpoint, 'PUT', `${p}/abandoned`, { body: data, giveUpMs: 100 });
  assert.equal(abandoned.status, undefined);
  assert.match(String(abandoned.error?.message), /gave up/);
  // ... unless asked to land anyway (a write the server applies after the client gave up).
  proxy.addRule({ method: 'PUT', key: /landed$/, action: { delay: 500, forwardAbandoned: true } });
  const landed = await call(proxy.endpoint, 'PUT', `${p}/landed`, { body: data, giveUpMs: 100 });
  assert.equal(landed.status, undefined);
  await sleep(700);
  assert.equal((await call(s3.endpoint, 'GET', `${p}/abandoned`)).status, 404, 'an abandoned request was forwarded');
  assertBody(await call(s3.endpoint, 'GET', `${p}/landed`), data, 'a forwardAbandoned request did not land');
  assert.equal(proxy.requests('PUT'), 3);
});

test('stale: answers with the version before the latest write seen through the proxy', async () => {
  const p = prefix();
  const key = `${p}/stale-obj`;
  const v1 = randomBytes(1000);
  const v2 = randomBytes(2000);
  const put1 = await call(proxy.endpoint, 'PUT', key, { body: v1, headers: { 'x-amz-meta-v': '1', 'content-type': 'application/x-v1' } });
  const put2 = await call(proxy.endpoint, 'PUT', key, { body: v2, headers: { 'x-amz-meta-v': '2' } });
  assert.equal(put1.status, 200);
  assert.equal(put2.status, 200);
  assert.notEqual(put1.headers.etag, put2.headers.etag);

  const rule = proxy.addRule({ key: /stale-obj$/, times: 3, action: 'stale' });
  const old = await call(proxy.endpoint, 'GET', key);
  assert.equal(old.status, 200);
  assertBody(old, v1, 'stale GET did not return v1');
  assert.equal(old.headers['x-amz-meta-v'], '1');
  assert.equal(old.headers['content-type'], 'application/x-v1');
  assert.equal(old.headers.etag, put1.headers.etag);
  assert.equal(old.headers['content-length'], '1000');
  const head = await call(proxy.endpoint, 'HEAD', key);
  assert.equal(head.headers['content-length'], '1000');
  assert.equal(head.headers['x-amz-meta-v'], '1');
  const ranged = await call(proxy.endpoint, 'GET', key, { headers: { range: 'bytes=10-19' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers['content-range'], 'bytes 10-19/1000');
  assertBody(ranged, v1.subarray(10, 20));
  assert.equal(proxy.fired(rule), 3);
  const now = await call(proxy.endpoint, 'GET', key);
  assertBody(now, v2);
  assert.equal(now.headers['x-amz-meta-v'], '2');

  // After a DELETE, the previous version is the one deleted. A stale rule never
  // fires on a write: the DELETE goes through and the rule waits for the GET.
  const rDel = proxy.addRule({ action: 'stale' });
  assert.equal((await call(proxy.endpoint, 'DELETE', key)).status, 204);
  assert.equal(proxy.fired(rDel), 0);
  assertBody(await call(proxy.endpoint, 'GET', key), v2);
  assert.equal(proxy.fired(rDel), 1);
  assert.equal((await call(proxy.endpoint, 'GET', key)).status, 404);

  // A key written once did not exist before.
  const fresh = `${p}/fresh`;
  await call(proxy.endpoint, 'PUT', fresh, { body: v1 });
  const rFresh = proxy.addRule({ method: 'GET', action: 'stale' });
  const gone = await call(proxy.endpoint, 'GET', fresh);
  assert.equal(gone.status, 404);
  assert.match(gone.body.toString(), /<Code>NoSuchKey<\/Code>/);
  assert.equal(proxy.fired(rFresh), 1);

  // A key never written through the proxy has no known past: the rule waits.
  const unseen = `${p}/unseen`;
  await call(s3.endpoint, 'PUT', unseen, { body: v2 });
  const rUnseen = proxy.addRule({ method: 'GET', action: 'stale' });
  assertBody(await call(proxy.endpoint, 'GET', unseen), v2);
  assert.equal(proxy.fired(rUnseen), 0);
});

test('stale: DeleteObjects (S3Bucket.deleteMany) passing the proxy is seen too', async (t) => {
  const bucket = new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: proxy.endpoint }, s3.bucket, silentLogger);
  t.after(() => bucket.destroy());
  const p = prefix();
  const keys = [`${p}/a&b`, `${p}/c<d`];
  const data = keys.map(() => randomBytes(100));
  for (const [i, k] of keys.entries()) {
    const d = data[i] ?? Buffer.alloc(0);
    await bucket.put(k, d, { md5: md5(d) });
  }
  await bucket.deleteMany(keys);
  assert.equal(await bucket.get(keys[0] ?? ''), null);
  const rule = proxy.addRule({ method: 'GET', times: 2, action: 'stale' });
  for (const [i, k] of keys.entries()) {
    const got = await bucket.get(k);
    assert.ok(got?.body.equals(data[i] ?? Buffer.alloc(0)), `stale GET of ${k} did not return the deleted version`);
  }
  assert.equal(proxy.fired(rule), 2);
});

test('history stays bounded: least recently written keys are forgotten', async (t) => {
  const p = prefix();
  const body = (n: number): Buffer => Buffer.alloc(1000, n);
  const byKeys = await startFaultProxy(s3.endpoint, { history: { maxKeys: 2 } });
  t.after(() => byKeys.stop());
  for (const k of ['a', 'b', 'c']) for (const n of [1, 2]) await call(byKeys.endpoint, 'PUT', `${p}/k-${k}`, { body: body(n) });
  const ra = byKeys.addRule({ method: 'GET', key: /k-a$/, action: 'stale' });
  const rc = byKeys.addRule({ method: 'GET', key: /k-c$/, action: 'stale' });
  assertBody(await call(byKeys.endpoint, 'GET', `${p}/k-a`), body(2));
  assertBody(await call(byKeys.endpoint, 'GET', `${p}/k-c`), body(1));
  assert.equal(byKeys.fired(ra), 0);
  assert.equal(byKeys.fired(rc), 1);

  const byBytes = await startFaultProxy(s3.endpoint, { history: { maxBytes: 3000 } });
  t.after(() => byBytes.stop());
  for (const k of ['x', 'y']) for (const n of [1, 2]) await call(byBytes.endpoint, 'PUT', `${p}/b-${k}`, { body: body(n) });
  const rx = byBytes.addRule({ method: 'GET', key: /b-x$/, action: 'stale' });
  const ry = byBytes.addRule({ method: 'GET', key: /b-y$/, action: 'stale' });
  assertBody(await call(byBytes.endpoint, 'GET', `${p}/b-x`), body(2));
  assertBody(await call(byBytes.endpoint, 'GET', `${p}/b-y`), body(1));
  assert.deepEqual([byBytes.fired(rx), byBytes.fired(ry)], [0, 1]);

  const only = await startFaultProxy(s3.endpoint, { history: { keys: /tracked/ } });
  t.after(() => only.stop());
  const off = await startFaultProxy(s3.endpoint, { history: false });
  t.after(() => off.stop());
  for (const px of [only, off]) {
    for (const k of ['tracked', 'other']) for (const n of [1, 2]) await call(px.endpoint, 'PUT', `${p}/h-${k}`, { body: body(n) });
  }
  only.addRule({ name: 'stale', method: 'GET', times: Infinity, action: 'stale' });
  off.addRule({ name: 'stale', method: 'GET', times: Infinity, action: 'stale' });
  assertBody(await call(only.endpoint, 'GET', `${p}/h-tracked`), body(1));
  assertBody(await call(only.endpoint, 'GET', `${p}/h-other`), body(2));
  assert.equal(only.fired('stale'), 1);
  assertBody(await call(off.endpoint, 'GET', `${p}/h-tracked`), body(2));
  assert.equal(off.fired('stale'), 0);
});

test('stop() cancels held requests and closes every connection', async () => {
  const p = await startFaultProxy(s3.endpoint);
  let stopped = false;
  try {
    p.addRule({ method: 'GET', action: { delay: 30_000 } });
    const pending = call(p.endpoint, 'GET', `${prefix()}/whatever`);
    while (p.requests('GET') === 0) await sleep(5);
    const t0 = performance.now();
    await p.stop();
    stopped = true;
    await p.stop(); // idempotent
    assert.ok(performance.now() - t0 < 1000, 'stop() waited for a held request');
    const r = await pending;
    assert.equal(r.status, undefined);
    assert.ok(r.error, 'the held client saw no error');
    assert.ok(r.ms < 5000);
    const port = Number(new URL(p.endpoint).port);
    const refused = await new Promise<string | undefined>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', (e: Error & { code?: string }) => resolve(e.code));
    });
    assert.equal(refused, 'ECONNREFUSED');
  } finally {
    if (!stopped) await p.stop();
  }
});

