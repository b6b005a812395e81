// Storage classes, SSE and cost, end to end: the built CLI creates volumes, a real
// FUSE mount writes blocks through the fault proxy (recording what each request
// carried), and status/stats price them. Runs on s3rver and on Ceph RGW; the RGW
// pass (scripts/test.js) adds STANDARD_IA and GLACIER_IR to the zone's placement and
// a "testing" KMS key, so RGW stores the class and refuses the classes it lacks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseS3Url, keyUnder } from '../../dist/s3/url.js';
import { BlockKeys, KEY_LAYOUT } from '../../dist/volume/keys.js';
import { md5 } from '../../dist/store/checksum.js';
import { monthlyStorageCost, requestCost } from '../../dist/volume/pricing.js';
import { startS3, testBackend, testBucket, type TestS3 } from '../helpers/s3.js';
import { runCli, failsWith } from '../helpers/cli.js';
import { mountVolume, type Mounted } from '../helpers/mount.js';
import { startFaultProxy, type FaultProxy, type RecordedRequest } from '../helpers/fault-proxy.js';
import { TEST_KMS_KEY_ID } from '../helpers/rgw.js';

const noFuse = existsSync('/dev/fuse') ? false : 'no /dev/fuse';
const backend = testBackend();
const rgwClasses = (process.env.S3Z_TEST_RGW_CLASSES ?? '').split(',').filter(Boolean);
const KIB = 1024;

let s3: TestS3;
let proxy: FaultProxy;
let work: string;
const mounts: Mounted[] = [];

before(async () => {
  s3 = await startS3();
  proxy = await startFaultProxy(s3.endpoint, { record: true, history: false });
  work = await mkdtemp(path.join(tmpdir(), 's3z-storage-'));
});
after(async () => {
  for (const m of mounts) await m.cleanup();
  await proxy?.stop();
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Through the recording proxy. */
const viaProxy = () => ({ ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });
const cli = (...args: string[]) => runCli(args, viaProxy());

function blockPuts(url: string): RecordedRequest[] {
  const prefix = `${parseS3Url(url).prefix}/blocks/`;
  return proxy.recorded('PUT').filter((r) => r.key.startsWith(prefix));
}

async function mount(url: string, name: string, extra: string[] = []): Promise<Mounted> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const m = await mountVolume({ env: viaProxy(), url, dir, cacheDir: path.join(work, `${name}.cache`), extraArgs: extra });
  mounts.push(m);
  return m;
}

/** Writes random blocks at these indexes through the device and fsyncs (a barrier: they are in S3 after). */
async function writeBlocks(m: Mounted, blockSize: number, indexes: number[]): Promise<void> {
  const fh = await open(path.join(m.dir, 'disk'), 'r+');
  try {
    for (const i of indexes) await fh.write(randomBytes(blockSize), 0, blockSize, i * blockSize);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

test('pricing: storage at the class price with its per-object minimum; requests per 1000; INTELLIGENT_TIERING monitoring', () => {
  assert.equal(monthlyStorageCost('STANDARD', 1024, 1024 * KIB), 0.023);
  assert.equal(monthlyStorageCost('STANDARD_IA', 1024, 1024 * KIB), 0.0125);
  // IA bills an object under 128 KiB as 128 KiB.
  assert.equal(monthlyStorageCost('STANDARD_IA', 8192, 64 * KIB), 0.0125);
  assert.equal(monthlyStorageCost('STANDARD', 1024, 1024 * KIB, 0.1), 0.1);
  assert.equal(monthlyStorageCost('INTELLIGENT_TIERING', 1000, 1024 * KIB), Math.round((1000 / 1024 * 0.023 + 0.0025) * 1e6) / 1e6);
  assert.equal(requestCost('STANDARD', { get: 1000, put: 1000, delete: 500, list: 0, head: 0 }), 0.0054);
  assert.equal(requestCost('GLACIER_IR', { get: 0, put: 0, delete: 0, list: 0, head: 0, bytesIn: 2 ** 30 }), 0.03);
});

test('create --storage-class: status shows it and a cost; every block PUT carries it; mount --storage-class overrides it for new writes', { skip: noFuse }, async () => {
  const url = s3.url('class');
  const c = await cli('create', url, '--size', '16M', '--block-size', '64K', '--storage-class', 'standard-ia');
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /STANDARD_IA/);
  let st = JSON.parse((await cli('status', url, '--json')).stdout) as Record<string, unknown>;
  assert.equal(st.storageClass, 'STANDARD_IA');
  assert.equal(st.monthlyCostUsd, 0);
  // The descriptor itself goes in the class: a server that refuses it says so at create.
  assert.equal(proxy.recorded('PUT').find((r) => r.key.endsWith('/s3zmount.json') && r.key.includes(parseS3Url(url).prefix))?.headers['x-amz-storage-class'], 'STANDARD_IA');

  const m = await mount(url, 'class');
  await writeBlocks(m, 64 * KIB, [0, 7, 200]);
  const stats = await m.stats();
  assert.ok(stats.s3.put >= 3);
  assert.equal(stats.requestCostUsd, requestCost('STANDARD_IA', stats.s3), 'requestCostUsd prices the stats s3 counts');
  assert.ok((stats.requestCostUsd as number) > 0);
  const shown = await runCli(['stats', m.dir], viaProxy());
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /\(~\$[0-9.e-]+ at list prices\)/);
  await m.unmount();
  const puts = blockPuts(url);
  assert.equal(puts.length, 3);
  for (const p of puts) assert.equal(p.headers['x-amz-storage-class'], 'STANDARD_IA', `PUT ${p.key}`);

  // A server that stores classes answers HEAD with it (S3 and RGW leave it out only for STANDARD).
  const keys = new BlockKeys(parseS3Url(url));
  const bucket = testBucket(s3);
  try {
    if (backend !== 's3rver') assert.equal((await bucket.head(keys.key(7)))?.storageClass, 'STANDARD_IA');

    // s3rver 3.7 predates GLACIER_IR (400 InvalidStorageClass); RGW has only what the runner enabled.
    const override = backend === 's3rver' ? 'ONEZONE_IA' : backend === 'rgw' && !rgwClasses.includes('GLACIER_IR') ? undefined : 'GLACIER_IR';
    if (override !== undefined) {
      const m2 = await mount(url, 'class-override', ['--storage-class', override]);
      await writeBlocks(m2, 64 * KIB, [9]);
      await m2.unmount();
      const put9 = blockPuts(url).filter((p) => p.key === keys.key(9));
      assert.equal(put9.length, 1);
      assert.equal(put9[0]?.headers['x-amz-storage-class'], override);
      if (backend !== 's3rver') assert.equal((await bucket.head(keys.key(9)))?.storageClass, override);
      // The mount asked the server first, with an object it removed again.
      const probeKey = keyUnder(parseS3Url(url), 'probe');
      assert.equal(proxy.recorded('PUT').filter((r) => r.key === probeKey).at(-1)?.headers['x-amz-storage-class'], override);
      assert.ok(proxy.recorded('DELETE').some((r) => r.key === probeKey), 'the probe is deleted');
      assert.equal(await bucket.head(probeKey), null);
    }
    const blocks = override === undefined ? 3 : 4;
    st = JSON.parse((await cli('status', url, '--json')).stdout) as Record<string, unknown>;
    assert.equal(st.blocksStored, blocks);
    assert.equal(st.storageClass, 'STANDARD_IA', 'the override is for one mount; the volume keeps its class');
    assert.equal(st.monthlyCostUsd, monthlyStorageCost('STANDARD_IA', blocks, 64 * KIB));
    const cheap = JSON.parse((await cli('status', url, '--json', '--price-per-gb-month', '2')).stdout) as Record<string, unknown>;
    assert.equal(cheap.monthlyCostUsd, monthlyStorageCost('STANDARD_IA', blocks, 64 * KIB, 2));
    const text = await cli('status', url);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /class\s+STANDARD_IA/);
    assert.match(text.stdout, /cost\s+~\$\S+ a month to store \(AWS S3 list prices, us-east-1, recorded \d{4}-\d\d-\d\d/);
    assert.match(text.stdout, new RegExp(`stored\\s+${blocks} blocks`));
  } finally {
    bucket.destroy();
  }
});

test('create --sse aws:kms --sse-kms-key-id: every PUT of the volume (descriptor, blocks, lease) sends both headers; status shows it', { skip: noFuse }, async () => {
  const url = s3.url('kms');
  const c = await cli('create', url, '--size', '4M', '--block-size', '64K', '--sse', 'aws:kms', '--sse-kms-key-id', TEST_KMS_KEY_ID);
  assert.equal(c.code, 0, c.stderr);
  const m = await mount(url, 'kms');
  await writeBlocks(m, 64 * KIB, [1, 2]);
  await m.unmount();
  const prefix = parseS3Url(url).prefix;
  // Descriptor, blocks and lease: a bucket policy that demands SSE would refuse any PUT without it.
  const puts = proxy.recorded('PUT').filter((r) => r.key.startsWith(`${prefix}/`));
  assert.equal(puts.filter((p) => p.key.includes('/blocks/')).length, 2, puts.map((p) => p.key).join(', '));
  assert.ok(puts.some((p) => /\/lease/.test(p.key)), `a lease PUT among ${puts.map((p) => p.key).join(', ')}`);
  for (const p of puts) {
    assert.equal(p.headers['x-amz-server-side-encryption'], 'aws:kms', `PUT ${p.key}`);
    assert.equal(p.headers['x-amz-server-side-encryption-aws-kms-key-id'], TEST_KMS_KEY_ID, `PUT ${p.key}`);
  }
  const st = JSON.parse((await cli('status', url, '--json')).stdout) as Record<string, unknown>;
  assert.deepEqual(st.sse, { mode: 'aws:kms', kmsKeyId: TEST_KMS_KEY_ID });
  assert.equal(st.blocksStored, 2);

  const aes = s3.url('aes');
  assert.equal((await cli('create', aes, '--size', '4M', '--sse', 'AES256')).code, 0);
  const put = proxy.recorded('PUT').find((r) => r.key === keyUnder(parseS3Url(aes), 's3zmount.json'));
  assert.equal(put?.headers['x-amz-server-side-encryption'], 'AES256');
  assert.equal(put?.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined);
  assert.match((await cli('status', aes)).stdout, /class\s+STANDARD, SSE AES256/);
});

test('a class the server has not enabled: create fails with one line and creates nothing', { skip: backend === 'rgw' ? false : 'needs RGW (s3rver takes any class)' }, async () => {
  const url = s3.url('refused');
  failsWith(await cli('create', url, '--size', '4M', '--storage-class', 'ONEZONE_IA'), 1, /the server refused storage class ONEZONE_IA \(HTTP 400 InvalidArgument\); nothing was created/);
  failsWith(await cli('status', url), 1, /no volume there/);
});

test('mount --storage-class with a class the server has not enabled: one line, nothing mounted, the lease let go', { skip: backend === 'rgw' ? noFuse : 'needs RGW (s3rver takes any class)' }, async () => {
  const url = s3.url('refused-mount');
  assert.equal((await cli('create', url, '--size', '4M', '--block-size', '64K')).code, 0);
  const dir = path.join(work, 'refused-mount');
  await mkdir(dir, { recursive: true });
  const r = await cli('mount', url, dir, '--cache-dir', path.join(work, 'refused-mount.cache'), '--storage-class', 'ONEZONE_IA');
  failsWith(r, 1, /the server refused storage class ONEZONE_IA \(HTTP 400 InvalidArgument\); nothing was mounted: pick another/);
  const mounted = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === dir);
  assert.equal(mounted, false, 'the mount point is left as it was');
  // The lease was let go: a mount in the volume's own class comes up at once.
  const m = await mount(url, 'refused-mount-2');
  await writeBlocks(m, 64 * KIB, [1]);
  await m.unmount();
  assert.equal(blockPuts(url).length, 1);
});

test('a descriptor written before classes and SSE reads as STANDARD without SSE', async () => {
  const url = s3.url('old');
  const loc = parseS3Url(url);
  const old = Buffer.from(JSON.stringify({ format: 1, uuid: '0f9c8a7e-1b2c-4d3e-8f90-123456789abc', size: 4 * 1024 * 1024, blockSize: 65536, created: '2026-01-01T00:00:00.000Z', keyLayout: KEY_LAYOUT }));
  const bucket = testBucket(s3);
  try {
    await bucket.put(keyUnder(loc, 's3zmount.json'), old, { md5: md5(old), contentType: 'application/json' });
  } finally {
    bucket.destroy();
  }
  const r = await runCli(['status', url, '--json'], s3.env);
  assert.equal(r.code, 0, r.stderr);
  const st = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(st.storageClass, 'STANDARD');
  assert.equal(st.sse, null);
  assert.equal(st.monthlyCostUsd, 0);
});

test('bad input: one clear line, exit 2, nothing created', async () => {
  const url = s3.url('bad');
  failsWith(await cli('create', url, '--size', '4M', '--storage-class', 'GLACIER'), 2, /GLACIER must be restored \(hours\) before they can be read.*readable on demand.*GLACIER_IR/);
  failsWith(await cli('create', url, '--size', '4M', '--storage-class', 'DEEP_ARCHIVE'), 2, /DEEP_ARCHIVE must be restored/);
  failsWith(await cli('create', url, '--size', '4M', '--storage-class', 'COLD'), 2, /--storage-class COLD: unknown storage class \(choose from STANDARD, INTELLIGENT_TIERING, STANDARD_IA, ONEZONE_IA, GLACIER_IR\)/);
  failsWith(await cli('create', url, '--size', '4M', '--sse-kms-key-id', 'k'), 2, /--sse-kms-key-id needs --sse aws:kms/);
  failsWith(await cli('create', url, '--size', '4M', '--sse', 'AES256', '--sse-kms-key-id', 'k'), 2, /--sse-kms-key-id needs --sse aws:kms/);
  failsWith(await cli('create', url, '--size', '4M', '--sse', 'rot13'), 2, /--sse rot13: choose AES256 .* or aws:kms/);
  failsWith(await cli('create', url, '--size', '4M', '--sse', 'aws:kms', '--sse-kms-key-id', ' '), 2, /--sse-kms-key-id is empty/);
  failsWith(await cli('status', url), 1, /no volume there/);
  assert.equal((await cli('create', url, '--size', '4M')).code, 0);
  failsWith(await cli('status', url, '--price-per-gb-month', 'cheap'), 2, /--price-per-gb-month cheap: expected a price in USD/);
  failsWith(await cli('status', url, '--price-per-gb-month', '-1'), 2, /expected a price in USD/);
  const dir = path.join(work, 'bad-mount');
  await mkdir(dir, { recursive: true });
  failsWith(await cli('mount', url, dir, '--storage-class', 'GLACIER'), 2, /GLACIER must be restored/);
  failsWith(await cli('mount', url, dir, '--read-only', '--storage-class', 'STANDARD_IA'), 2, /--storage-class applies to new writes: a read-only mount writes nothing/);
});

test('--help teaches the classes, the GLACIER refusal and ZFS native encryption', async () => {
  const h = await runCli(['create', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--storage-class <class>/);
  assert.match(h.stdout, /STANDARD, INTELLIGENT_TIERING, STANDARD_IA, ONEZONE_IA, GLACIER_IR/);
  assert.match(h.stdout, /GLACIER and DEEP_ARCHIVE are refused: their objects must be restored/);
  assert.match(h.stdout, /--sse <mode>/);
  assert.match(h.stdout, /keyformat=passphrase/);
  const s = await runCli(['status', '--help']);
  assert.match(s.stdout, /--price-per-gb-month <usd>/);
});
