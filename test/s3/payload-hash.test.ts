// s3rver checks no signature, so a wrong x-amz-content-sha256 (which real S3
// refuses) would pass every other test: check what a PUT actually sends, and,
// on a server that verifies payload hashes (RGW, or an external S3), that a body
// which does not match its signed hash is refused and nothing is stored. Block
// PUTs carry no Content-MD5 (DESIGN §2: the signed payload hash protects the body);
// small objects that ask for it still get it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { S3BlockStore } from '../../dist/store/s3-store.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { silentLogger } from '../../dist/log.js';
import { parseS3Url } from '../../dist/s3/url.js';
import { startS3, testBackend } from '../helpers/s3.js';
import { signV4, credentialsFrom, sha256Hex } from '../helpers/sigv4.js';

async function recorder(t: TestContext): Promise<{ seen: { headers: http.IncomingHttpHeaders; body: Buffer }[]; bucket: S3Bucket }> {
  const seen: { headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { ETag: '"x"' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  // Any credentials do for this fake server; the real ones (S3Z_TEST_*) are restored for the next test.
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  t.after(() => {
    for (const [k, v] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  process.env.AWS_ACCESS_KEY_ID = randomBytes(10).toString('hex');
  process.env.AWS_SECRET_ACCESS_KEY = randomBytes(20).toString('hex');
  const bucket = new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }, 'b12', silentLogger);
  t.after(() => bucket.destroy());
  return { seen, bucket };
}

test('a block PUT signs the SHA-256 of the body it sends, with the checksum metadata and no Content-MD5', async (t) => {
  const { seen, bucket } = await recorder(t);
  const store = new S3BlockStore({ blockSize: 65536, blockCount: 16, readOnly: false }, bucket, new BlockKeys({ bucket: 'b12', prefix: 'v' }), silentLogger);
  const data = randomBytes(65536);
  await store.write(3, data);
  assert.equal(seen.length, 1);
  const put = seen[0]!;
  assert.deepEqual(put.body, data);
  assert.equal(put.headers['x-amz-content-sha256'], createHash('sha256').update(data).digest('hex'));
  assert.equal(put.headers['content-md5'], undefined, 'a block PUT sends no Content-MD5');
  assert.equal(put.headers['x-amz-meta-s3z-sha256'], createHash('sha256').update(data).digest('base64'));
  assert.match(String(put.headers.authorization), /SignedHeaders=[^,]*x-amz-content-sha256/);
});

test('the server refuses a PUT whose body does not match its signed x-amz-content-sha256, and stores nothing', { skip: testBackend() === 's3rver' && 's3rver verifies no payload hash' }, async (t) => {
  const s3 = await startS3();
  t.after(() => s3.stop());
  const creds = credentialsFrom(s3.env);
  const key = `${parseS3Url(s3.url('hash')).prefix}/blk`;
  const url = new URL(`/${s3.bucket}/${key}`, s3.endpoint);
  const signedBody = randomBytes(65536);
  // Same length, one byte flipped: only the hash can tell.
  const sent = Buffer.from(signedBody);
  sent[1000] = (sent[1000] ?? 0) ^ 0xff;
  const send = (body: Buffer, payloadHash: string, method = 'PUT'): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const headers = signV4(creds, { method, url, body, payloadHash });
      const req = http.request(url, { method, headers: method === 'PUT' ? { ...headers, 'content-length': String(body.length) } : headers }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end(method === 'PUT' ? body : undefined);
    });
  const bad = await send(sent, sha256Hex(signedBody));
  assert.equal(bad.status, 400, `a mismatched payload hash was answered ${bad.status}: ${bad.body}`);
  assert.match(bad.body, /XAmzContentSHA256Mismatch|BadDigest|InvalidDigest/);
  const after = await send(Buffer.alloc(0), sha256Hex(Buffer.alloc(0)), 'GET');
  assert.equal(after.status, 404, `the refused PUT stored something: GET answered ${after.status}`);
  // The same request, honestly hashed, goes through: the refusal was the hash's doing.
  const good = await send(sent, sha256Hex(sent));
  assert.equal(good.status, 200, good.body);
});

test('blocks of many sizes, written at once, each carry their own payload hash', async (t) => {
  const { seen, bucket } = await recorder(t);
  const store = new S3BlockStore({ blockSize: 1 << 20, blockCount: 16, readOnly: false }, bucket, new BlockKeys({ bucket: 'b12', prefix: 'v' }), silentLogger);
  const blocks = Array.from({ length: 8 }, () => randomBytes(1 << 20));
  await Promise.all(blocks.map((b, i) => store.write(i, b)));
  assert.equal(seen.length, blocks.length);
  for (const put of seen) {
    const sha = createHash('sha256').update(put.body).digest();
    assert.ok(blocks.some((b) => b.equals(put.body)), 'the body is one of the blocks');
    assert.equal(put.headers['x-amz-content-sha256'], sha.toString('hex'));
    assert.equal(put.headers['x-amz-meta-s3z-sha256'], sha.toString('base64'));
    assert.equal(put.headers['content-md5'], undefined);
  }
});

test('a small object PUT with md5 still sends Content-MD5', async (t) => {
  const { seen, bucket } = await recorder(t);
  const body = Buffer.from('{"format":1}');
  await bucket.put('v/s3zmount.json', body, { md5: createHash('md5').update(body).digest('base64'), contentType: 'application/json' });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.headers['content-md5'], createHash('md5').update(body).digest('base64'));
});
