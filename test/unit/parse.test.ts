import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSize, checkGeometry, formatSize } from '../../dist/size.js';
import { parseS3Url, formatS3Url, keyUnder } from '../../dist/s3/url.js';
import { isZero } from '../../dist/store/checksum.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { parseDescriptor } from '../../dist/volume/descriptor.js';

test('sizes take K/M/G/T suffixes, binary', () => {
  assert.equal(parseSize('1G'), 1073741824);
  assert.equal(parseSize('1GiB'), 1073741824);
  assert.equal(parseSize('4k'), 4096);
  assert.equal(parseSize('2T'), 2 * 1024 ** 4);
  assert.equal(parseSize('1.5M'), 1572864);
  assert.equal(parseSize('123'), 123);
  for (const bad of ['', 'G', '1X', '-1G', '1.0001K', '1 2', 'abc']) {
    assert.throws(() => parseSize(bad), { code: 'EBADSIZE' }, bad);
  }
  assert.equal(formatSize(1073741824), '1 GiB');
});

test('geometry: block size a power of two from 4K to 64M, size a multiple in (0, 2^53]', () => {
  checkGeometry(1 << 30, 1 << 20);
  checkGeometry(2 ** 53, 4096);
  checkGeometry(64 << 20, 64 << 20);
  assert.throws(() => checkGeometry(1 << 30, 2048), { code: 'EBADSIZE' });
  assert.throws(() => checkGeometry(1 << 30, 128 << 20), { code: 'EBADSIZE' });
  assert.throws(() => checkGeometry(3 << 20, 3 << 20), { code: 'EBADSIZE' });
  assert.throws(() => checkGeometry(0, 4096), { code: 'EBADSIZE' });
  assert.throws(() => checkGeometry(2 ** 53 + 4096, 4096), { code: 'EBADSIZE' });
  assert.throws(() => checkGeometry((1 << 20) + 4096, 1 << 20), /not a multiple/);
});

test('s3 URLs', () => {
  assert.deepEqual(parseS3Url('s3://bucket/a/b'), { bucket: 'bucket', prefix: 'a/b' });
  assert.deepEqual(parseS3Url('s3://bucket/a/b/'), { bucket: 'bucket', prefix: 'a/b' });
  assert.deepEqual(parseS3Url('s3://bucket'), { bucket: 'bucket', prefix: '' });
  assert.equal(formatS3Url({ bucket: 'b12', prefix: 'v' }), 's3://b12/v');
  assert.equal(keyUnder({ bucket: 'b12', prefix: '' }, 'x'), 'x');
  assert.equal(keyUnder({ bucket: 'b12', prefix: 'p' }, 'x'), 'p/x');
  for (const bad of ['http://b/v', 's3:/b/v', 's3://B/v', 's3://ab/v', 's3://-bad/v', 's3://a..b/v', 's3://bucket/a//b', 's3://192.168.1.1/v', 'bucket/v']) {
    assert.throws(() => parseS3Url(bad), { code: 'EBADURL' }, bad);
  }
});

test('isZero sees a single set bit anywhere', () => {
  const b = Buffer.alloc(3 * 1024 * 1024 + 5);
  assert.equal(isZero(b), true);
  for (const at of [0, 7, 1024 * 1024, b.length - 1]) {
    b[at] = 1;
    assert.equal(isZero(b), false, `byte ${at}`);
    b[at] = 0;
  }
  assert.equal(isZero(b.subarray(3)), true);
});

test('block keys sort by index and parse back', () => {
  const keys = new BlockKeys({ bucket: 'b12', prefix: 'vol' });
  assert.equal(keys.key(0), 'vol/blocks/000000000000');
  assert.equal(keys.key(255), 'vol/blocks/0000000000ff');
  const idx = [0, 1, 15, 16, 4095, 2 ** 41 - 1];
  const sorted = idx.map((i) => keys.key(i)).sort();
  assert.deepEqual(sorted.map((k) => keys.index(k)), idx);
  assert.equal(keys.index('vol/blocks/xyz'), undefined);
  assert.equal(keys.index('other/blocks/000000000000'), undefined);
});

test('descriptor validation refuses what this build cannot read', () => {
  const good = { format: 1, uuid: '668d4c7b-6033-4351-bb5f-7382efca2810', size: 1 << 30, blockSize: 1 << 20, created: '2026-01-01T00:00:00Z', keyLayout: 'hex/1' };
  assert.equal(parseDescriptor(Buffer.from(JSON.stringify(good)), 's3://b/v').size, 1 << 30);
  for (const bad of [{ ...good, format: 2 }, { ...good, blockSize: 3000 }, { ...good, keyLayout: 'hash/9' }, { ...good, uuid: 7 }, { ...good, size: 1000 }]) {
    assert.throws(() => parseDescriptor(Buffer.from(JSON.stringify(bad)), 's3://b/v'), { code: 'EBADVOLUME' });
  }
  assert.throws(() => parseDescriptor(Buffer.from('{nope'), 's3://b/v'), { code: 'EBADVOLUME' });
});
