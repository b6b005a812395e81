// s3rver checks no signature, so a wrong x-amz-content-sha256 (which real S3
// refuses) would pass every other test: check what a PUT actually sends. Block
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
  process.env.AWS_ACCESS_KEY_ID = 'K';
  process.env.AWS_SECRET_ACCESS_KEY = 'S';
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
