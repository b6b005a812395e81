// The BlockStore contract (src/store/types.ts), one body run against every store:
// the memory store and the S3 store on the test server (s3rver, RGW or external).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { BlockStore } from '../../dist/store/types.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { S3BlockStore } from '../../dist/store/s3-store.js';
import type { S3Bucket } from '../../dist/s3/bucket.js';
import { parseS3Url } from '../../dist/s3/url.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { countStored } from '../../dist/volume/inventory.js';
import { silentLogger } from '../../dist/log.js';
import { startS3, testBucket, testBackend, type TestS3 } from '../helpers/s3.js';

const BS = 64 * 1024;
const COUNT = 64;

function contract(name: string, make: () => Promise<{ store: BlockStore; stored: () => Promise<number> }>) {
  describe(`BlockStore contract: ${name}`, () => {
    test('unwritten blocks read as null', async () => {
      const { store } = await make();
      assert.equal(await store.read(0), null);
      assert.equal(await store.read(COUNT - 1), null);
    });

    test('a written block reads back byte for byte; zero writes and null remove it', async () => {
      const { store, stored } = await make();
      const a = randomBytes(BS);
      const b = randomBytes(BS);
      await store.write(3, Buffer.from(a));
      await store.write(4, Buffer.from(b));
      assert.deepEqual(await store.read(3), a);
      assert.deepEqual(await store.read(4), b);
      assert.equal(await stored(), 2);
      await store.write(3, Buffer.alloc(BS));
      await store.write(4, null);
      assert.equal(await store.read(3), null);
      assert.equal(await store.read(4), null);
      assert.equal(await stored(), 0, 'zero blocks leave no object');
    });

    test('a rewrite replaces the block', async () => {
      const { store } = await make();
      const v1 = randomBytes(BS);
      const v2 = randomBytes(BS);
      await store.write(7, Buffer.from(v1));
      await store.write(7, Buffer.from(v2));
      assert.deepEqual(await store.read(7), v2);
    });

    test('out of range indices and wrong sizes are refused', async () => {
      const { store } = await make();
      await assert.rejects(store.read(COUNT), { code: 'ERANGE' });
      await assert.rejects(store.read(-1), { code: 'ERANGE' });
      await assert.rejects(store.read(1.5), { code: 'ERANGE' });
      await assert.rejects(store.write(0, Buffer.alloc(BS - 1, 1)), { code: 'ERANGE' });
    });

    test('flush resolves; after close every call is refused', async () => {
      const { store } = await make();
      await store.write(1, randomBytes(BS));
      await store.flush();
      await store.close();
      await assert.rejects(store.read(1), { code: 'ECLOSED' });
      await assert.rejects(store.write(1, null), { code: 'ECLOSED' });
    });
  });
}

contract('memory', async () => {
  const store = new MemoryBlockStore(BS, COUNT);
  return { store, stored: async () => store.blocks.size };
});

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

contract(`s3 (${testBackend()})`, async () => {
  const keys = new BlockKeys(parseS3Url(s3.url()));
  const store = new S3BlockStore({ blockSize: BS, blockCount: COUNT, readOnly: false }, bucket, keys, silentLogger);
  return { store, stored: async () => (await countStored(bucket, keys)).blocks };
});

test('s3 store: a read-only store refuses writes; objects carry their checksum', async () => {
  const loc = parseS3Url(s3.url());
  const keys = new BlockKeys(loc);
  const rw = new S3BlockStore({ blockSize: BS, blockCount: COUNT, readOnly: false }, bucket, keys, silentLogger);
  const data = randomBytes(BS);
  await rw.write(2, Buffer.from(data));
  const head = await bucket.head(keys.key(2));
  assert.ok(head);
  assert.equal(head.size, BS);
  assert.match(head.metadata['s3z-sha256'] ?? '', /^[A-Za-z0-9+/]{43}=$/);
  const ro = new S3BlockStore({ blockSize: BS, blockCount: COUNT, readOnly: true }, bucket, keys, silentLogger);
  await assert.rejects(ro.write(2, null), { code: 'EROFS' });
  assert.deepEqual(await ro.read(2), data);
});

test('s3 listing pages through more than 1000 objects in key order', async () => {
  const loc = parseS3Url(s3.url());
  const keys = new BlockKeys(loc);
  const store = new S3BlockStore({ blockSize: 4096, blockCount: 4096, readOnly: false }, bucket, keys, silentLogger);
  const block = Buffer.alloc(4096, 9);
  const indices = Array.from({ length: 1100 }, (_, i) => i * 3);
  for (let i = 0; i < indices.length; i += 50) {
    await Promise.all(indices.slice(i, i + 50).map((ix) => store.write(ix, Buffer.from(block))));
  }
  const seen: number[] = [];
  let pages = 0;
  for await (const page of bucket.list(keys.prefix)) {
    pages++;
    for (const o of page) seen.push(keys.index(o.key) ?? -1);
  }
  assert.ok(pages >= 2, `expected several pages, got ${pages}`);
  assert.deepEqual(seen, indices);
  assert.ok(bucket.stats.list >= 2);
});
