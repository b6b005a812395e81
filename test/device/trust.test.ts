// Trust nothing that may be stale (issue 8), end to end through the CLI and real
// FUSE mounts on a real S3 server:
// - a cache dir that missed writes made through another cache dir never serves or
//   uploads its old blocks, in every mode and for a partial write;
// - `unmount` exits 0 only when everything is in S3; during an outage it says how
//   much is not, the mount stays up and keeps retrying, and the data gets there;
// - a cache dir on a disk smaller than --cache-size keeps the daemon alive;
// - a block the volume lists but S3 has lost reads as EIO, not zeros;
// - closing a descriptor that only read costs no flush (so it works during an outage).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { runCli } from '../helpers/cli.js';
import { isMounted, listVolume, mountVolume, rawClient, type Mounted, type MountStats } from '../helpers/mount.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

if (process.env.CI === 'true') assert.ok(existsSync('/dev/fuse'), 'CI needs /dev/fuse');
const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse';

let s3: TestS3;
let work: string;
const mounts = new Set<Mounted>();

before(async () => {
  s3 = await startS3();
  work = await mkdtemp(path.join(tmpdir(), 's3z-trust-'));
});

after(async () => {
  for (const m of mounts) await m.cleanup().catch(() => {});
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function create(url: string, size: string, env = s3.env, blockSize = '1M'): Promise<void> {
  const r = await runCli(['create', url, '--size', size, '--block-size', blockSize], env);
  assert.equal(r.code, 0, r.stderr);
}

async function mount(url: string, name: string, cache: string, opts: { mode?: 'read-write' | 'read-only' | 'overlay'; env?: Record<string, string>; extra?: string[] } = {}): Promise<Mounted> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const m = await mountVolume({ env: opts.env ?? s3.env, url, dir, cacheDir: path.join(work, cache), mode: opts.mode ?? 'read-write', extraArgs: opts.extra ?? [] });
  mounts.add(m);
  return m;
}

async function unmount(m: Mounted): Promise<void> {
  await m.unmount();
  mounts.delete(m);
}

async function writeAt(m: Mounted, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path.join(m.dir, 'disk'), 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readAt(m: Mounted, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path.join(m.dir, 'disk'), 'r');
  try {
    const out = Buffer.alloc(length);
    const { bytesRead } = await fh.read(out, 0, length, offset);
    assert.equal(bytesRead, length);
    return out;
  } finally {
    await fh.close();
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('trust', { skip }, () => {
  test('a cache dir that missed another cache dir\'s writes serves and keeps the newer data, in every mode and for a partial write', async () => {
    const url = s3.url('stale');
    await create(url, '32M');
    const X = randomBytes(4 * MiB);
    const Y = randomBytes(4 * MiB);
    const late = randomBytes(MiB); // a block only B writes: A's persisted zero map says it is absent

    const a1 = await mount(url, 'a1', 'A');
    await writeAt(a1, 0, X);
    assert.ok(sha(await readAt(a1, 0, X.length)) === sha(X));
    await unmount(a1);

    // The same cache dir, nothing written elsewhere: trusted (zero map reused, blocks served locally).
    const a2 = await mount(url, 'a2', 'A', { mode: 'read-only' });
    assert.equal(sha(await readAt(a2, 0, X.length)), sha(X));
    const st2 = await a2.stats();
    assert.equal((st2.zeroMap as { loadedFrom: string }).loadedFrom, 'cache', 'an untouched volume reuses the persisted zero map');
    assert.equal(st2.cache.miss, 0, 'an untouched volume is read from the trusted cache');
    assert.ok(st2.cache.hit > 0);
    await unmount(a2);

    const b1 = await mount(url, 'b1', 'B');
    await writeAt(b1, 0, Y);
    await writeAt(b1, 10 * MiB, late);
    await unmount(b1);

    // Read-write through A: Y, not X; and a 4 KiB write is patched onto Y.
    const a3 = await mount(url, 'a3', 'A');
    assert.equal(sha(await readAt(a3, 0, Y.length)), sha(Y), 'read-write: the newer data');
    assert.equal(sha(await readAt(a3, 10 * MiB, MiB)), sha(late), 'a block written elsewhere is seen although the old zero map lacked it');
    const patch = randomBytes(4096);
    await writeAt(a3, 4096, patch);
    const expected = Buffer.from(Y);
    patch.copy(expected, 4096);
    await unmount(a3);
    const cold = await mount(url, 'cold1', 'C1', { mode: 'read-only' });
    assert.equal(sha(await readAt(cold, 0, expected.length)), sha(expected), 'the partial write went up on top of the newer data');
    await unmount(cold);

    // Read-only and overlay through a stale A: B writes again in between each.
    const Z = randomBytes(4 * MiB);
    const b2 = await mount(url, 'b2', 'B');
    await writeAt(b2, 0, Z);
    await unmount(b2);
    const a4 = await mount(url, 'a4', 'A', { mode: 'read-only' });
    assert.equal(sha(await readAt(a4, 0, Z.length)), sha(Z), 'read-only: the newer data');
    assert.equal(((await a4.stats()).zeroMap as { loadedFrom: string }).loadedFrom, 'list', 'a stale cache lists the volume again');
    await unmount(a4);

    const W = randomBytes(4 * MiB);
    const b3 = await mount(url, 'b3', 'B');
    await writeAt(b3, 0, W);
    await unmount(b3);
    const a5 = await mount(url, 'a5', 'A', { mode: 'overlay' });
    assert.equal(sha(await readAt(a5, 0, W.length)), sha(W), 'overlay: the newer data');
    await unmount(a5);
  });

  test('a stale cache dir\'s unuploaded journal is refused, never uploaded over newer data', async () => {
    const url = s3.url('stalejournal');
    await create(url, '16M');
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const a = await mount(url, 'j-a', 'JA', { env });
      proxy.addRule({ method: 'PUT', key: /\/blocks\//, times: Infinity, action: { status: 503 } });
      const fh = await open(path.join(a.dir, 'disk'), 'r+');
      await fh.write(randomBytes(MiB), 0, MiB, 0);
      await fh.close().catch(() => {}); // the close is a barrier and fails: S3 refuses
      const u = await runCli(['unmount', '--now', a.dir], env);
      assert.equal(u.code, 1, u.stderr);
      mounts.delete(a);
      proxy.clearRules();
      // Another cache dir writes the block (taking over the lease of the stopped mount).
      const Y = randomBytes(MiB);
      const b = await mount(url, 'j-b', 'JB', { env, extra: ['--force'] });
      await writeAt(b, 0, Y);
      await unmount(b);
      const dir = path.join(work, 'j-a2');
      await mkdir(dir, { recursive: true });
      const r = await runCli(['mount', url, dir, '--cache-dir', path.join(work, 'JA')], env);
      assert.equal(r.code, 1, 'refused');
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /holds 1 block.*not yet in S3.*would overwrite newer data/);
      const c = await mount(url, 'j-c', 'JC', { mode: 'read-only', env });
      assert.equal(sha(await readAt(c, 0, MiB)), sha(Y), 'S3 kept the newer write');
      await unmount(c);
    } finally {
      await proxy.stop();
    }
  });

  test('unmount during an S3 outage exits 1 with what is not uploaded; the mount keeps retrying and the data reaches S3', async () => {
    const url = s3.url('outage');
    await create(url, '64M');
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const m = await mount(url, 'out1', 'OUT', { env });
      proxy.addRule({ name: 'down', method: 'PUT', key: /\/blocks\//, times: Infinity, action: { status: 503 } });
      const data = randomBytes(8 * MiB);
      const fh = await open(path.join(m.dir, 'disk'), 'r+');
      await fh.write(data, 0, data.length, 0);
      await assert.rejects(fh.sync(), /EIO/, 'fsync fails rather than lies during an outage');
      await fh.close().catch(() => {});

      const u = await runCli(['unmount', m.dir, '--timeout', '4'], env);
      assert.equal(u.code, 1, `unmount must fail: ${u.stdout} ${u.stderr}`);
      const lines = u.stderr.trim().split('\n');
      assert.equal(lines.length, 1, u.stderr);
      assert.match(lines[0] ?? '', /8 blocks \(8(\.0)? MiB\) not in S3 yet/);
      assert.match(lines[0] ?? '', /keeps retrying/);
      assert.match(lines[0] ?? '', /unmounts by itself once they are in S3/, 'the user is told the stop goes on without them');
      assert.ok(isMounted(m.dir) && m.alive(), 'the mount stays up');
      assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 0, 'nothing reached S3 yet');

      // The daemon finishes the stop it was asked for once S3 is back, so the second
      // unmount must be waiting before the outage ends, as a user retrying it would be.
      const waiting = runCli(['unmount', m.dir, '--timeout', '60'], env);
      await new Promise((r) => setTimeout(r, 3000));
      assert.ok(isMounted(m.dir), 'still mounted while S3 is down');
      proxy.clearRules();
      const again = await waiting;
      assert.equal(again.code, 0, again.stderr);
      mounts.delete(m);
      assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 8, 'every block reached S3');
      const c = await mount(url, 'out2', 'OUT2', { mode: 'read-only' });
      assert.equal(sha(await readAt(c, 0, data.length)), sha(data));
      await unmount(c);
    } finally {
      await proxy.stop();
    }
  });

  test('unmount --now during an outage leaves the blocks to the next mount, which uploads them first', async () => {
    const url = s3.url('now');
    await create(url, '16M');
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const m = await mount(url, 'now1', 'NOW', { env });
      proxy.addRule({ method: 'PUT', key: /\/blocks\//, times: Infinity, action: { status: 503 } });
      const data = randomBytes(3 * MiB);
      const fh = await open(path.join(m.dir, 'disk'), 'r+');
      await fh.write(data, 0, data.length, 0);
      await fh.close().catch(() => {});
      const u = await runCli(['unmount', '--now', m.dir], env);
      assert.equal(u.code, 1, u.stderr);
      assert.match(u.stderr, /unmounted with 3 blocks \(3(\.0)? MiB\) not yet in S3; .* keeps them and the next read-write mount uploads them first/);
      assert.ok(!isMounted(m.dir) && !m.alive(), 'stopped');
      mounts.delete(m);
      proxy.clearRules();
      const again = await mount(url, 'now1', 'NOW', { env });
      const st = await again.stats();
      assert.equal(st.cache.replayed, 3, 'the journal was replayed');
      assert.equal(st.dirtyBlocks, 0);
      assert.equal(sha(await readAt(again, 0, data.length)), sha(data));
      await unmount(again);
      assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 3);
    } finally {
      await proxy.stop();
    }
  });

  test('unmount, with or without --now, while S3 answers nothing stops within seconds, says the lease is left, and the next mount here takes it over', async () => {
    const url = s3.url('hung');
    await create(url, '16M');
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      let m2: Mounted | undefined;
      for (const how of [['--now'], []]) {
        const m = m2 ?? (await mount(url, 'hung1', 'HUNG', { env }));
        await writeAt(m, 0, randomBytes(MiB));
        // Every request is held, unanswered, for longer than the test runs.
        proxy.addRule({ name: 'hung', times: Infinity, action: { delay: 600_000 } });
        const started = Date.now();
        const u = await runCli(['unmount', ...how, m.dir], env, { timeoutMs: 60_000 });
        const took = Date.now() - started;
        assert.ok(took < 15_000, `unmount ${how.join(' ')} took ${took} ms`);
        assert.ok(!isMounted(m.dir) && !m.alive(), 'stopped');
        mounts.delete(m);
        assert.equal(u.code, 0, `nothing was dirty: ${u.stderr}`);
        assert.match(u.stdout, /^unmounted /);
        assert.match(u.stderr, /^s3zmount: warning: the write lease could not be released \(S3 did not answer within 5 s\); it expires by itself within a minute; until then a read-write mount on another host needs --force\n$/);
        assert.ok((proxy.counts.rules.hung ?? 0) > 0, 'the release did try S3');
        proxy.clearRules();
        // Its holder is gone from this host: no --force needed here.
        m2 = await mount(url, 'hung2', 'HUNG', { env });
      }
      await unmount(m2!);
    } finally {
      await proxy.stop();
    }
  });

  test('a cache dir on a disk smaller than --cache-size: a warning, the daemon stays up, every acknowledged write reaches S3', async () => {
    const url = s3.url('full');
    await create(url, '512M');
    const small = path.join(work, 'tmpfs');
    await mkdir(small, { recursive: true });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', small]);
    try {
      const dir = path.join(work, 'full1');
      await mkdir(dir, { recursive: true });
      const m = await mountVolume({ env: s3.env, url, dir, cacheDir: path.join(small, 'cache'), extraArgs: ['--cache-size', '1G'] });
      mounts.add(m);
      assert.match(m.mountStderr, /warning: --cache-size 1 GiB does not fit in .* the cache is bounded to/);
      const data = randomBytes(300 * MiB);
      const src = path.join(work, 'src.bin');
      const f = await open(src, 'w');
      await f.write(data);
      await f.close();
      await run('dd', [`if=${src}`, `of=${path.join(dir, 'disk')}`, 'bs=1M', 'oflag=direct', 'conv=fsync,notrunc'], { maxBuffer: 1 << 20 });
      assert.ok(m.alive(), 'the daemon is alive');
      const st: MountStats = await m.stats();
      assert.equal(st.dirtyBlocks, 0, 'fsync: nothing dirty');
      assert.ok(st.cache.bytes <= 64 * MiB, `the cache stayed within its disk: ${st.cache.bytes}`);
      await unmount(m);
      const c = await mount(url, 'full2', 'FULL2', { mode: 'read-only' });
      assert.equal(sha(await readAt(c, 0, data.length)), sha(data), 'every byte is in S3');
      await unmount(c);
    } finally {
      await run('umount', ['-l', small]).catch(() => {});
    }
  });

  test('a block the volume lists but S3 no longer has reads as EIO, never zeros', async () => {
    const url = s3.url('missing');
    await create(url, '16M');
    const w = await mount(url, 'miss-w', 'MW');
    await writeAt(w, 0, randomBytes(4 * MiB));
    await unmount(w);
    const r = await mount(url, 'miss-r', 'MR', { mode: 'read-only' });
    // Deleted behind the mount's back, after its LIST (an erase or a lifecycle rule).
    const key = (await listVolume(s3, url)).find((o) => o.key.endsWith('/blocks/000000000002'))?.key;
    assert.ok(key !== undefined);
    const client = rawClient(s3);
    await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }));
    client.destroy();
    await assert.rejects(readAt(r, 2 * MiB, 4096), /EIO/);
    assert.equal((await readAt(r, 1 * MiB, 4096)).length, 4096, 'other blocks still read');
    assert.match(r.log(), /block listed as stored has no object in S3/);
    await unmount(r);
  });

  test('closing a descriptor that only read costs no flush, even during an outage; one that wrote is a barrier', async () => {
    const url = s3.url('close');
    await create(url, '16M');
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const m = await mount(url, 'close1', 'CL', { env });
      proxy.addRule({ method: 'PUT', key: /\/blocks\//, times: Infinity, action: { status: 503 } });
      const writer = await open(path.join(m.dir, 'disk'), 'r+');
      await writer.write(randomBytes(MiB), 0, MiB, 0);
      const started = Date.now();
      const reader = await open(path.join(m.dir, 'disk'), 'r');
      await reader.read(Buffer.alloc(4096), 0, 4096, 0);
      await reader.close();
      assert.ok(Date.now() - started < 1500, `a reader's close waited ${Date.now() - started} ms`);
      await assert.rejects(writer.close(), /EIO/, "the writer's close is a barrier, and S3 is down");
      proxy.clearRules();
      await unmount(m);
      assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 1);
    } finally {
      await proxy.stop();
    }
  });
});
