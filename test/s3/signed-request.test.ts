// The lean block path (src/s3/signed-request.ts, block-http.ts): its SigV4 signer
// against AWS's documented examples and against the SDK's own signer, and
// S3Bucket.get/put on the wire: session tokens, payload hashes a server that checks
// them refuses (RGW), cut bodies retried, a missing key (null) told apart from a
// missing bucket (ENOBUCKET), If-None-Match honoured where the server honours it.
import { test, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { SigV4Signer, encodePath, sha256Hex, EMPTY_SHA256 } from '../../dist/s3/signed-request.js';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { S3zError } from '../../dist/errors.js';
import { silentLogger } from '../../dist/log.js';
import { parseS3Url } from '../../dist/s3/url.js';
import { startS3, useCredentials, testBackend } from '../helpers/s3.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { signV4 } from '../helpers/sigv4.js';

// AWS's example credentials from "Signature Version 4 examples" (S3 API reference,
// "Examples: Signature Calculations in AWS Signature Version 4"): public, documented.
const DOC_CREDS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
const DOC_DATE = new Date('2013-05-24T00:00:00Z');

test('signer: AWS documented example, GET Object with a Range header', () => {
  const h = new SigV4Signer('us-east-1').sign(DOC_CREDS, {
    method: 'GET', host: 'examplebucket.s3.amazonaws.com', path: '/test.txt', headers: { range: 'bytes=0-9' }, payloadHash: EMPTY_SHA256,
  }, DOC_DATE);
  assert.equal(h.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
    'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, ' +
    'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41');
  assert.equal(h['x-amz-date'], '20130524T000000Z');
  assert.equal(h['x-amz-content-sha256'], EMPTY_SHA256);
});

test('signer: AWS documented example, PUT Object (a key needing encoding, storage class, payload hash)', () => {
  const body = Buffer.from('Welcome to Amazon S3.');
  assert.equal(sha256Hex(body), '44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072');
  const h = new SigV4Signer('us-east-1').sign(DOC_CREDS, {
    method: 'PUT', host: 'examplebucket.s3.amazonaws.com', path: `/${encodePath('test$file.text')}`,
    headers: { date: 'Fri, 24 May 2013 00:00:00 GMT', 'x-amz-storage-class': 'REDUCED_REDUNDANCY' }, payloadHash: sha256Hex(body),
  }, DOC_DATE);
  assert.equal(h.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
    'SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, ' +
    'Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd');
});

function bytes(d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof d === 'string') return d;
  return d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

test('signer: the same signature as the SDK\'s @smithy/signature-v4 for odd keys, metadata and a session token', async () => {
  class Sha256 {
    #h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
    constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
      this.#h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
    }
    update(d: string | ArrayBuffer | ArrayBufferView): void {
      this.#h.update(bytes(d));
    }
    async digest(): Promise<Uint8Array> {
      return this.#h.digest();
    }
  }
  const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: randomBytes(20).toString('base64'), sessionToken: randomBytes(40).toString('base64') };
  const date = new Date('2024-02-29T23:59:58Z');
  for (const key of ['vol/blocks/00000000ab', 'a b/c+d/é~_.-!*\'()/%41', 'p/ü/ü ü']) {
    const region = 'eu-central-1';
    const body = randomBytes(1000);
    const headers = {
      'content-type': 'application/octet-stream', 'content-length': String(body.length),
      'x-amz-meta-s3z-sha256': createHash('sha256').update(body).digest('base64'),
      'if-none-match': '*', 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'k  with   spaces ',
    };
    const path = `/bkt/${encodePath(key)}`;
    const ours = new SigV4Signer(region).sign(creds, { method: 'PUT', host: 'h.example:9000', path, headers, payloadHash: sha256Hex(body) }, date);
    const sdk = new SignatureV4({ credentials: creds, region, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: true });
    const signed = await sdk.sign(
      { method: 'PUT', protocol: 'http:', hostname: 'h.example', port: 9000, path, query: {}, headers: { ...headers, host: 'h.example:9000', 'x-amz-content-sha256': sha256Hex(body) }, body },
      { signingDate: date },
    );
    assert.equal(ours.authorization, signed.headers.authorization, `key ${key}`);
    assert.equal(ours['x-amz-security-token'], creds.sessionToken);
    // And the tests' own independent signer agrees (it encodes from a decoded URL path).
    const url = new URL(`http://h.example:9000${path}`);
    assert.equal(signV4({ ...creds, region }, { method: 'PUT', url, headers, body, date }).authorization, ours.authorization, `key ${key} (helper)`);
  }
});

test('encodePath keeps "/" and encodes the rest as S3 wants, once', () => {
  assert.equal(encodePath('a b/c+d/%/é/~-._'), 'a%20b/c%2Bd/%25/%C3%A9/~-._');
  assert.equal(encodePath("!*'()"), '%21%2A%27%28%29');
});

// ---------------------------------------------------------------------------
// on the wire, against the test server (s3rver or RGW) through the fault proxy

const s3 = await startS3();
after(() => s3.stop());
useCredentials(s3);
const proxy = await startFaultProxy(s3.endpoint, { record: true }).catch(async (err: unknown) => {
  await s3.stop();
  throw err;
});
after(() => proxy.stop());
beforeEach(() => {
  proxy.clearRules();
  proxy.resetCounts();
});

const RETRY = { retries: 3, minDelayMs: 10, maxDelayMs: 50, maxTotalMs: 10_000 };

function bucketAt(endpoint: string, name = s3.bucket): S3Bucket {
  return new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint, retry: RETRY, requestTimeoutMs: 5000 }, name, silentLogger);
}

function keyFor(name: string): string {
  return `${parseS3Url(s3.url(name)).prefix}/${name}`;
}

test('a block round-trips: metadata and ETag come back, a key with spaces and unicode included', async (t) => {
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  const key = `${keyFor('rt')}/a b+ü`;
  const body = randomBytes(300_000);
  const etag = await bucket.put(key, body, { sha256Hex: sha256Hex(body), metadata: { 's3z-sha256': 'abc=' } });
  const got = await bucket.get(key);
  assert.ok(got !== null);
  assert.ok(got.body.equals(body));
  assert.equal(got.metadata['s3z-sha256'], 'abc=');
  assert.equal(got.etag, etag);
  assert.equal(bucket.stats.bytesIn, body.length);
  assert.equal(bucket.stats.bytesOut, body.length);
  const put = proxy.recorded('PUT')[0];
  assert.equal(put?.key, key, 'the proxy decoded the key the PUT named');
});

test('session credentials: x-amz-security-token is sent and signed on GET and PUT', { skip: testBackend() !== 's3rver' && 'a made-up token is refused by a server that checks it' }, async (t) => {
  const saved = process.env.AWS_SESSION_TOKEN;
  t.after(() => {
    if (saved === undefined) delete process.env.AWS_SESSION_TOKEN;
    else process.env.AWS_SESSION_TOKEN = saved;
  });
  const token = randomBytes(30).toString('base64');
  process.env.AWS_SESSION_TOKEN = token;
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  const key = keyFor('token');
  const body = randomBytes(1000);
  await bucket.put(key, body, {});
  assert.ok((await bucket.get(key))?.body.equals(body));
  const reqs = proxy.recorded().filter((r) => r.key === key);
  assert.deepEqual(reqs.map((r) => r.method), ['PUT', 'GET']);
  for (const r of reqs) {
    assert.equal(r.headers['x-amz-security-token'], token, `${r.method} carries the token`);
    assert.match(String(r.headers.authorization), /SignedHeaders=[^,]*x-amz-security-token/, `${r.method} signs the token`);
  }
  // Without a known hash, a small body is hashed for the signature: never UNSIGNED-PAYLOAD.
  assert.equal(reqs[0]?.headers['x-amz-content-sha256'], sha256Hex(body));
});

test('a PUT whose body does not match its signed payload hash is refused and stores nothing', { skip: testBackend() === 's3rver' && 's3rver verifies no payload hash' }, async (t) => {
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  const key = keyFor('badhash');
  const body = randomBytes(65536);
  const other = Buffer.from(body);
  other[7] = (other[7] ?? 0) ^ 1;
  await assert.rejects(bucket.put(key, body, { sha256Hex: sha256Hex(other) }), (err: unknown) => {
    assert.ok(err instanceof S3zError, String(err));
    assert.equal(err.code, 'ES3');
    assert.match(err.message, /HTTP 400 (XAmzContentSHA256Mismatch|BadDigest)/);
    return true;
  });
  assert.equal(bucket.stats.retries, 0, 'a refused hash is not retried');
  assert.equal(await bucket.get(key), null, 'nothing was stored');
});

test('a GET body cut short is retried and the whole body comes back', async (t) => {
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  const key = keyFor('cut');
  const body = randomBytes(1 << 20);
  await bucket.put(key, body, { sha256Hex: sha256Hex(body) });
  const rule = proxy.addRule({ method: 'GET', times: 2, action: { truncate: 100_000 } });
  const got = await bucket.get(key);
  assert.ok(got?.body.equals(body));
  assert.equal(proxy.fired(rule), 2);
  assert.equal(bucket.stats.get, 3);
  assert.equal(bucket.stats.retries, 2);
  assert.equal(bucket.stats.bytesIn, body.length, 'cut bodies are not counted in');
});

test('a missing key is null at once; a missing bucket is ENOBUCKET at once', async (t) => {
  const bucket = bucketAt(proxy.endpoint);
  const none = bucketAt(proxy.endpoint, `no-such-bucket-s3z-${randomBytes(4).toString('hex')}`);
  t.after(() => {
    bucket.destroy();
    none.destroy();
  });
  assert.equal(await bucket.get(keyFor('absent')), null);
  await assert.rejects(none.get('k'), (err: unknown) => err instanceof S3zError && err.code === 'ENOBUCKET');
  await assert.rejects(none.put('k', Buffer.from('x'), {}), (err: unknown) => err instanceof S3zError && err.code === 'ENOBUCKET');
  assert.equal(bucket.stats.retries + none.stats.retries, 0);
  assert.deepEqual(proxy.counts.methods, { GET: 2, PUT: 1 });
});

test('wrong credentials: EACCESS at once, naming the server\'s error', { skip: testBackend() === 's3rver' && 's3rver checks no signature' }, async (t) => {
  const saved = process.env.AWS_SECRET_ACCESS_KEY;
  t.after(() => {
    process.env.AWS_SECRET_ACCESS_KEY = saved;
  });
  process.env.AWS_SECRET_ACCESS_KEY = randomBytes(20).toString('hex');
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  await assert.rejects(bucket.get(keyFor('creds')), (err: unknown) => {
    assert.ok(err instanceof S3zError && err.code === 'EACCESS', String(err));
    assert.match(err.message, /SignatureDoesNotMatch/);
    return true;
  });
  assert.equal(bucket.stats.retries, 0);
});

test('If-None-Match: * on a key that exists is EVOLUMEEXISTS (what the lease expects)', { skip: testBackend() === 's3rver' && 's3rver ignores conditions' }, async (t) => {
  const bucket = bucketAt(proxy.endpoint);
  t.after(() => bucket.destroy());
  const key = keyFor('cond');
  await bucket.put(key, Buffer.from('one'), { ifAbsent: true, contentType: 'application/json' });
  await assert.rejects(bucket.put(key, Buffer.from('two'), { ifAbsent: true }), (err: unknown) => err instanceof S3zError && err.code === 'EVOLUMEEXISTS');
  assert.equal((await bucket.get(key))?.body.toString(), 'one');
  assert.equal(proxy.recorded('PUT')[0]?.headers['if-none-match'], '*');
});
