// The volume commands end to end, as a user runs them: the built CLI against a
// real s3rver, checking exit codes, one-line errors and JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3BlockStore } from '../../dist/store/s3-store.js';
import { parseS3Url, keyUnder } from '../../dist/s3/url.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { LeaseHolder } from '../../dist/volume/lease.js';
import { md5 } from '../../dist/store/checksum.js';
import { silentLogger } from '../../dist/log.js';
import { startS3, testBucket, type TestS3 } from '../helpers/s3.js';
import { runCli, failsWith } from '../helpers/cli.js';

let s3: TestS3;
before(async () => {
  s3 = await startS3();
});
after(() => s3?.stop());

const cli = (...args: string[]) => runCli(args, s3.env);

test('create then status --json shows an empty 1G volume with 1M blocks and no lease', async () => {
  const url = s3.url();
  const c = await cli('create', url, '--size', '1G');
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /created s3:\/\/.* 1 GiB in 1 MiB blocks/);
  assert.equal(c.stderr, '', 'nothing on stderr (no SDK warning)');
  const s = await cli('status', url, '--json');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stderr, '');
  const j = JSON.parse(s.stdout) as Record<string, unknown>;
  assert.equal(j.format, 1);
  assert.equal(j.size, 1073741824);
  assert.equal(j.blockSize, 1048576);
  assert.equal(j.blocksStored, 0);
  assert.equal(j.bytesStored, 0);
  assert.equal(j.lease, null);
  assert.match(String(j.uuid), /^[0-9a-f-]{36}$/);
  const h = await cli('status', url);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /lease\s+free/);
});

test('status counts stored blocks; verify passes a clean volume and reports a tampered one', async () => {
  const url = s3.url();
  assert.equal((await cli('create', url, '--size', '64M', '--block-size', '64K')).code, 0);
  const loc = parseS3Url(url);
  const keys = new BlockKeys(loc);
  const bucket = testBucket(s3, { retry: { retries: 1, minDelayMs: 10, maxDelayMs: 10, maxTotalMs: 1000 } });
  try {
    const store = new S3BlockStore({ blockSize: 65536, blockCount: 1024, readOnly: false }, bucket, keys, silentLogger);
    for (const i of [0, 5, 1023]) await store.write(i, randomBytes(65536));
    const st = JSON.parse((await cli('status', url, '--json')).stdout) as { blocksStored: number; bytesStored: number };
    assert.equal(st.blocksStored, 3);
    assert.equal(st.bytesStored, 3 * 65536);

    const ok = await cli('verify', url);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /3 block objects checked .* 0 bad/);

    // Behind its back: same key and metadata, other bytes; a stray key; a short object.
    const head = await bucket.head(keys.key(5));
    assert.ok(head);
    const raw = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' });
    await raw.send(new PutObjectCommand({ Bucket: loc.bucket, Key: keys.key(5), Body: randomBytes(65536), Metadata: head.metadata }));
    await raw.send(new PutObjectCommand({ Bucket: loc.bucket, Key: keyUnder(loc, 'blocks/junk'), Body: 'x' }));
    await raw.send(new PutObjectCommand({ Bucket: loc.bucket, Key: keys.key(7), Body: Buffer.alloc(100, 1), Metadata: head.metadata }));
    raw.destroy();

    const bad = await cli('verify', url, '--json');
    assert.equal(bad.code, 1);
    const report = JSON.parse(bad.stdout) as { checked: number; problems: { key: string; problem: string }[] };
    assert.equal(report.checked, 5);
    assert.deepEqual(report.problems.map((p) => p.key).sort(), [keys.key(5), keys.key(7), keyUnder(loc, 'blocks/junk')].sort());
    assert.match(report.problems.find((p) => p.key === keys.key(5))?.problem ?? '', /does not match its checksum/);
    assert.match(bad.stderr.trim(), /^s3zmount: .*3 of 5 block objects failed verification$/);
    // The good blocks are not reported.
    assert.ok(!report.problems.some((p) => p.key === keys.key(0) || p.key === keys.key(1023)));
  } finally {
    bucket.destroy();
  }
});

/** A new 16 MiB volume of 4 KiB blocks, and a store that writes its blocks straight to S3 (the caller destroys `bucket`). */
async function smallVolume() {
  const url = s3.url();
  assert.equal((await cli('create', url, '--size', '16M', '--block-size', '4K')).code, 0);
  const loc = parseS3Url(url);
  const bucket = testBucket(s3);
  const store = new S3BlockStore({ blockSize: 4096, blockCount: 4096, readOnly: false }, bucket, new BlockKeys(loc), silentLogger);
  return { url, loc, bucket, store };
}

test('erase needs --yes, then deletes everything (lease generations and a legacy lease object included)', async () => {
  const { url, loc, bucket, store } = await smallVolume();
  try {
    for (let i = 0; i < 20; i++) await store.write(i * 7, Buffer.alloc(4096, i + 1));
    const leaseOpts = { holder: 'lease of the erase test', ttlMs: 60_000, force: false, settleMs: 0 };
    await (await LeaseHolder.acquire(bucket, loc, leaseOpts, silentLogger)).release();
    const held = await LeaseHolder.acquire(bucket, loc, leaseOpts, silentLogger);
    assert.match((await cli('status', url)).stdout, /lease\s+held by lease of the erase test until /);
    failsWith(await cli('erase', url, '--yes'), 1, /mounted read-write by lease of the erase test/);
    await held.release();
    const legacy = Buffer.from('{}');
    await bucket.put(keyUnder(loc, 'lease'), legacy, { md5: md5(legacy) });
    failsWith(await cli('erase', url), 2, /pass --yes/);
    assert.equal((await cli('status', url)).code, 0, 'still there without --yes');
    const e = await cli('erase', url, '--yes');
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /20 block objects/);
    let left = 0;
    for await (const page of bucket.list(loc.prefix + '/')) left += page.length;
    assert.equal(left, 0);
    failsWith(await cli('status', url), 1, /no volume there/);
  } finally {
    bucket.destroy();
  }
});

test('leftovers of a volume whose descriptor is gone: create refuses to adopt them, erase clears them', async () => {
  const { url, loc, bucket, store } = await smallVolume();
  try {
    for (let i = 0; i < 3; i++) await store.write(i, Buffer.alloc(4096, i + 1));
    // What an erase leaves when a mount writes on under it: blocks (and a lease), no descriptor.
    await bucket.delete(keyUnder(loc, 's3zmount.json'));
    failsWith(await cli('status', url), 1, /no volume there/);
    failsWith(await cli('create', url, '--size', '16M'), 1, /no volume there, but block objects of an earlier one are, which a new volume would take as its own; delete them first with "s3zmount erase --yes s3:\/\/.*"/);
    const held = await LeaseHolder.acquire(bucket, loc, { holder: 'a mount still writing', ttlMs: 60_000, force: false, settleMs: 0 }, silentLogger);
    failsWith(await cli('create', url, '--size', '16M'), 1, /block objects and leases of an earlier one/);
    failsWith(await cli('erase', url, '--yes'), 1, /mounted read-write by a mount still writing/);
    // Its holder (this test's process) runs on this host: --force would leave it writing into the erased place.
    failsWith(await cli('erase', url, '--yes', '--force'), 1, /mounted read-write by a mount still writing, which still runs on this host: unmount it first$/);
    await held.release();
    const e = await cli('erase', url, '--yes');
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^erased s3:\/\/.*: 3 block objects and the leases an erased volume left deleted$/m);
    let left = 0;
    for await (const page of bucket.list(loc.prefix + '/')) left += page.length;
    assert.equal(left, 0);
    failsWith(await cli('erase', url, '--yes'), 1, /no volume there/);
    const c = await cli('create', url, '--size', '16M');
    assert.equal(c.code, 0, c.stderr);
  } finally {
    bucket.destroy();
  }
});

test('bad input: one clear line and the right exit code', async () => {
  const url = s3.url();
  failsWith(await cli('create', 's3:/nope', '--size', '1G'), 2, /not an s3:\/\/ URL/);
  failsWith(await cli('status', 's3://Bad_Bucket/v'), 2, /not a valid bucket name/);
  failsWith(await cli('create', 's3://no-such-bucket-s3z/v', '--size', '1G'), 1, /bucket does not exist/);
  failsWith(await cli('status', 's3://no-such-bucket-s3z/v'), 1, /bucket does not exist/);
  failsWith(await runCli(['status', url], { ...s3.env, AWS_ACCESS_KEY_ID: 'NOBODY' }), 1, /access denied .*InvalidAccessKeyId.*credentials/);
  failsWith(await cli('status', url), 1, /no volume there/);
  failsWith(await cli('verify', url), 1, /no volume there/);
  assert.equal((await cli('create', url, '--size', '1G')).code, 0);
  failsWith(await cli('create', url, '--size', '1G'), 1, /already exists/);
  failsWith(await cli('create', s3.url(), '--size', '1000K'), 2, /not a multiple of the block size/);
  failsWith(await cli('create', s3.url(), '--size', '1G', '--block-size', '3K'), 2, /power of two from 4K to 64M/);
  failsWith(await cli('create', s3.url(), '--size', '1G', '--block-size', '2K'), 2, /power of two from 4K to 64M/);
  failsWith(await cli('create', s3.url(), '--size', '1G', '--block-size', '128M'), 2, /power of two from 4K to 64M/);
  failsWith(await cli('create', s3.url(), '--size', '0'), 2, /more than 0/);
  failsWith(await cli('create', s3.url(), '--size', '16P'), 2, /at most 2\^53/);
  failsWith(await cli('create', s3.url(), '--size', 'lots'), 2, /not a size/);
  failsWith(await cli('--endpoint', 'ftp://x', 'status', url), 2, /must start with http/);
  failsWith(await cli('create', url), 2, /required option '--size <size>'/);
});

test('an endpoint nothing listens on (a wrong port) is one line within seconds, for status and mount', async () => {
  const env = { AWS_ACCESS_KEY_ID: randomBytes(10).toString('hex'), AWS_SECRET_ACCESS_KEY: randomBytes(20).toString('hex') };
  const r = await runCli(['--endpoint', 'http://127.0.0.1:9', 'status', 's3://test/v'], env, { timeoutMs: 60_000 });
  failsWith(r, 1, /cannot reach http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\)/);
  // The full retries (6.3 s of backoff at the least) are for an endpoint that answered
  // before: an outage. A first contact gets 2 s (a local server started just before).
  assert.ok(r.ms < 6000, `status took ${r.ms} ms`);
  const dir = mkdtempSync(join(tmpdir(), 's3z-mnt-'));
  try {
    const m = await runCli(['--endpoint', 'http://127.0.0.1:9', 'mount', 's3://test/v', dir, '--cache-dir', `${dir}-cache`], env, { timeoutMs: 60_000 });
    failsWith(m, 1, /cannot reach http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\)/);
    assert.ok(m.ms < 6000, `mount took ${m.ms} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-cache`, { recursive: true, force: true });
  }
});

test('TLS problems are one line that says what to fix, without retries', async () => {
  // An https:// endpoint that serves plain http (the test's S3).
  const plain = await runCli(['--endpoint', s3.endpoint.replace(/^http:/, 'https:'), 'status', s3.url()], s3.env, { timeoutMs: 60_000 });
  failsWith(plain, 1, /cannot talk to https:\/\/127\.0\.0\.1:\d+ for GET .*: the server does not speak TLS there \(an http:\/\/ endpoint given as https:\/\/\?\)$/);
  assert.ok(plain.ms < 10_000, `took ${plain.ms} ms: a TLS mismatch is not worth a retry`);
  // An https server whose self-signed certificate names "localhost", reached as 127.0.0.1.
  const dir = mkdtempSync(join(tmpdir(), 's3z-tls-'));
  const server = createHttpsServer({}, (_req, res) => {
    res.statusCode = 500;
    res.end();
  });
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    server.setSecureContext({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const untrusted = await runCli(['--endpoint', endpoint, 'status', s3.url()], s3.env, { timeoutMs: 60_000 });
    failsWith(untrusted, 1, /its certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\); give Node the CA that signed it with NODE_EXTRA_CA_CERTS=/);
    const trusted = await runCli(['--endpoint', endpoint, 'status', s3.url()], { ...s3.env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') }, { timeoutMs: 60_000 });
    failsWith(trusted, 1, /its certificate does not name this host \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('missing credentials say so', async () => {
  const r = await runCli(['status', s3.url()], { AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' });
  failsWith(r, 1, /no AWS credentials found/);
});

test('--help teaches; --version prints', async () => {
  const h = await runCli(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /create \[options\] <s3url>/);
  assert.match(h.stdout, /Exit codes/);
  const c = await runCli(['create', '--help']);
  assert.match(c.stdout, /power of two from 4K to 64M/);
  const v = await runCli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+/);
});
