// `s3zmount hydrate` end to end, through the built CLI, real FUSE mounts and a real
// S3 server (issue 10, item 1):
// - `hydrate --wait` makes every stored block local: a read of the whole device
//   afterwards costs no GET; `stats` and the stats file say the same;
// - after a remount of the same cache dir, hydrating again costs no GET;
// - without --wait it returns at once and says how to follow;
// - S3 failing for good (503 on every GET) is one line and exit 1;
// - a foreground read during hydration does not wait for it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { runCli } from '../helpers/cli.js';
import { mountVolume, type Mounted } from '../helpers/mount.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';

const MiB = 1024 * 1024;

if (process.env.CI === 'true') assert.ok(existsSync('/dev/fuse'), 'CI needs /dev/fuse');
const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse';

let s3: TestS3;
let work: string;
const mounts = new Set<Mounted>();

before(async () => {
  s3 = await startS3();
  work = await mkdtemp(path.join(tmpdir(), 's3z-hydrate-'));
});

after(async () => {
  for (const m of mounts) await m.cleanup().catch(() => {});
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function create(url: string, size: string): Promise<void> {
  const r = await runCli(['create', url, '--size', size, '--block-size', '1M'], s3.env);
  assert.equal(r.code, 0, r.stderr);
}

async function mount(url: string, name: string, cache: string, env = s3.env): Promise<Mounted> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const m = await mountVolume({ env, url, dir, cacheDir: path.join(work, cache) });
  mounts.add(m);
  return m;
}

async function unmount(m: Mounted): Promise<void> {
  await m.unmount();
  mounts.delete(m);
}

/** Writes `blocks` random 1 MiB blocks at every other block from 0; returns the device's expected contents. */
async function fill(url: string, sizeMiB: number, blocks: number): Promise<Buffer> {
  const image = Buffer.alloc(sizeMiB * MiB);
  const m = await mount(url, `w-${path.basename(url)}`, `w-${path.basename(url)}.cache`);
  const fh = await open(path.join(m.dir, 'disk'), 'r+');
  try {
    for (let i = 0; i < blocks; i++) {
      const data = randomBytes(MiB);
      data.copy(image, 2 * i * MiB);
      await fh.write(data, 0, MiB, 2 * i * MiB);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  await unmount(m);
  return image;
}

async function readAll(m: Mounted, size: number): Promise<Buffer> {
  const fh = await open(path.join(m.dir, 'disk'), 'r');
  try {
    const out = Buffer.alloc(size);
    const { bytesRead } = await fh.read(out, 0, size, 0);
    assert.equal(bytesRead, size);
    return out;
  } finally {
    await fh.close();
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
type Hydration = { state: string; runs: number; done: number; total: number; local: number; fetched: number; bytesDone: number; bytesTotal: number; error: string | null };
const hydrationOf = async (m: Mounted): Promise<Hydration> => (await m.stats()).hydration as Hydration;

describe('hydrate', { skip }, () => {
  test('hydrate --wait makes every block local (0 GETs to read the device); after a remount it fetches nothing again', async () => {
    const url = s3.url('hyd');
    await create(url, '32M');
    const image = await fill(url, 32, 12);

    const m1 = await mount(url, 'h1', 'H');
    assert.equal((await hydrationOf(m1)).state, 'idle');
    const r = await runCli(['hydrate', m1.dir, '--wait'], s3.env, { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hydrated .*: 12 blocks \(12 MiB\) local; 12 fetched, 0 were local already\n$/);
    // stderr is a pipe here: plain progress lines, the last one complete.
    assert.match(r.stderr, /^hydrate: 12 blocks \(12 MiB\) to do\n/);
    assert.match(r.stderr, /hydrate: 12\/12 blocks, 12 MiB\/12 MiB \(100%\)/);
    const h = await hydrationOf(m1);
    assert.deepEqual({ state: h.state, runs: h.runs, done: h.done, total: h.total, fetched: h.fetched, local: h.local, bytesDone: h.bytesDone, bytesTotal: h.bytesTotal },
      { state: 'done', runs: 1, done: 12, total: 12, fetched: 12, local: 0, bytesDone: 12 * MiB, bytesTotal: 12 * MiB });
    const gets = (await m1.stats()).s3.get;
    assert.equal(sha(await readAll(m1, 32 * MiB)), sha(image));
    assert.equal((await m1.stats()).s3.get, gets, 'reading a hydrated device costs no GET');
    const st = await runCli(['stats', m1.dir], s3.env);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /hydration {2}done: 12\/12 blocks \(12 MiB of 12 MiB\); 12 fetched, 0 already local/);
    await unmount(m1);

    // Same cache dir: without --wait it returns at once and says how to follow; then nothing is fetched.
    const m2 = await mount(url, 'h2', 'H');
    const before = (await m2.stats()).s3.get;
    const nowait = await runCli(['hydrate', m2.dir], s3.env);
    assert.equal(nowait.code, 0, nowait.stderr);
    assert.match(nowait.stdout, /^hydrating .*; follow it with "s3zmount stats .*h2"\n$/);
    const again = await runCli(['hydrate', m2.dir, '--wait', '--quiet'], s3.env, { timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, '', '--quiet shows no progress');
    assert.match(again.stdout, /0 fetched, 12 were local already/);
    assert.equal((await m2.stats()).s3.get, before, 'a resumed hydration sends no GET for blocks');
    assert.equal(sha(await readAll(m2, 32 * MiB)), sha(image));
    assert.equal((await m2.stats()).s3.get, before);
    await unmount(m2);
  });

  test('S3 failing for good: hydrate --wait exits 1 with one line; a foreground read is not starved by hydration', async () => {
    const url = s3.url('hydfail');
    await create(url, '64M');
    const image = await fill(url, 64, 32);
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const m = await mount(url, 'f1', 'F', env);
      proxy.addRule({ method: 'GET', key: /\/blocks\//, times: Infinity, action: { status: 503 } });
      const r = await runCli(['hydrate', m.dir, '--wait'], s3.env, { timeoutMs: 120_000 });
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('s3zmount:'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] ?? '', /^s3zmount: hydration of .*f1 failed after 0\/32 blocks: .*/);
      assert.equal((await hydrationOf(m)).state, 'failed');
      assert.match(await runCli(['stats', m.dir], s3.env).then((s) => s.stdout), /hydration {2}failed after 0\/32 blocks/);
      proxy.clearRules();

      // Each request now takes 1 s: hydrating 32 blocks 16 at a time takes >= 2 s, and
      // longer while a reader waits. A read of the last block (the sweep's last) must
      // take one request's time, not wait for the others.
      proxy.setLatency(1000);
      const started = await runCli(['hydrate', m.dir], s3.env);
      assert.equal(started.code, 0, started.stderr);
      const t0 = Date.now();
      const fh = await open(path.join(m.dir, 'disk'), 'r');
      const last = 31 * 2 * MiB;
      const got = Buffer.alloc(4096);
      try {
        await fh.read(got, 0, 4096, last);
      } finally {
        await fh.close();
      }
      const ms = Date.now() - t0;
      assert.deepEqual(got, image.subarray(last, last + 4096));
      const h = await hydrationOf(m);
      assert.equal(h.state, 'running', `hydration finished before the read did (${ms} ms): the bound says nothing`);
      assert.ok(ms < 2000, `a foreground read took ${ms} ms during hydration`);
      proxy.setLatency(0);
      const done = await runCli(['hydrate', m.dir, '--wait', '--quiet'], s3.env, { timeoutMs: 120_000 });
      assert.equal(done.code, 0, done.stderr);
      assert.equal(sha(await readAll(m, 64 * MiB)), sha(image));
      await unmount(m);
    } finally {
      await proxy.stop();
    }
  });

  test('hydrate --wait on a mount that goes away exits 1 with one line', async () => {
    const url = s3.url('hydgone');
    await create(url, '32M');
    await fill(url, 32, 16);
    const proxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const m = await mount(url, 'g1', 'G', { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });
      // 16 blocks, all fetched at once: each GET must outlast the 1.5 s before the unmount.
      proxy.setLatency(3000);
      const waiting = runCli(['hydrate', m.dir, '--wait', '--quiet'], s3.env, { timeoutMs: 120_000 });
      await new Promise((r) => setTimeout(r, 1500));
      await unmount(m);
      const r = await waiting;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^s3zmount: .*g1 (was unmounted|began to unmount|: the mount went away) before hydration finished.*\n$/);
    } finally {
      await proxy.stop();
    }
  });
});
