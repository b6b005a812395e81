// A mount of a big volume is usable before its LIST ends (the zero map lists the rest
// in the background), end to end through the CLI, a real FUSE mount and a real S3
// server, with the fault proxy holding back the LIST's later pages:
// - the mount is ready after the first page; a block past it reads what S3 holds,
//   an absent one zeros; once listed, an absent block costs no GET;
// - writes made while the LIST runs win over the pages that arrive after them, and
//   `hydrate --wait` waits for the whole LIST, so it pulls every stored block.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { runCli } from '../helpers/cli.js';
import { mountVolume, type Mounted } from '../helpers/mount.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';

if (process.env.CI === 'true') assert.ok(existsSync('/dev/fuse'), 'CI needs /dev/fuse');
const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse';

const BS = 4096;
const BLOCKS = 2048; // an 8 MiB volume of 4 KiB blocks
const STORED = 1500; // blocks 0..1499 hold data: two LIST pages (1000 keys each)
const HOLD_MS = 6000;

let s3: TestS3;
let work: string;
let url: string;
let image: Buffer;
const mounts = new Set<Mounted>();

interface ZeroMapStats {
  listing: boolean;
  listPages: number;
  unlistedReads: number;
  stored: number;
}

before(async () => {
  s3 = await startS3();
  work = await mkdtemp(path.join(tmpdir(), 's3z-listing-'));
  url = s3.url('listing');
  const c = await runCli(['create', url, '--size', String(BLOCKS * BS), '--block-size', '4K'], s3.env);
  assert.equal(c.code, 0, c.stderr);
  image = Buffer.alloc(BLOCKS * BS);
  randomBytes(STORED * BS).copy(image);
  const file = path.join(work, 'image');
  await writeFile(file, image);
  const p = await runCli(['put', '--quiet', file, url], s3.env);
  assert.equal(p.code, 0, p.stderr);
});

after(async () => {
  for (const m of mounts) await m.cleanup().catch(() => {});
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A proxy that holds the LIST's later pages (those with a continuation token) HOLD_MS each. */
async function slowListing(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(s3.endpoint, { history: false });
  proxy.addRule({ name: 'later pages', method: 'GET', key: /^$/, query: /continuation-token/, times: Infinity, action: { delay: HOLD_MS } });
  return proxy;
}

async function mount(name: string, env: Record<string, string>, mode: 'read-write' | 'read-only'): Promise<Mounted> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const m = await mountVolume({ env, url, dir, cacheDir: path.join(work, `${name}.cache`), mode });
  mounts.add(m);
  return m;
}

async function zeroMap(m: Mounted): Promise<ZeroMapStats> {
  return (await m.stats()).zeroMap as ZeroMapStats;
}

async function readBlock(m: Mounted, index: number): Promise<Buffer> {
  const fh = await open(path.join(m.dir, 'disk'), 'r');
  try {
    const out = Buffer.alloc(BS);
    const { bytesRead } = await fh.read(out, 0, BS, index * BS);
    assert.equal(bytesRead, BS);
    return out;
  } finally {
    await fh.close();
  }
}

async function writeBlock(m: Mounted, index: number, data: Buffer): Promise<void> {
  const fh = await open(path.join(m.dir, 'disk'), 'r+');
  try {
    await fh.write(data, 0, BS, index * BS);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const expected = (index: number): Buffer => image.subarray(index * BS, (index + 1) * BS);

describe('a volume listed in the background', { skip }, () => {
  test('the mount is ready after the first LIST page; blocks past it read what S3 holds, absent ones zeros', async () => {
    const proxy = await slowListing();
    try {
      const m = await mount('ro', { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }, 'read-only');
      const z = await zeroMap(m);
      assert.equal(z.listing, true, 'the mount did not wait for the held page');
      assert.equal(z.listPages, 1);
      assert.ok(m.mountMs < HOLD_MS, `mount took ${m.mountMs} ms`);
      assert.match((await runCli(['stats', m.dir], s3.env)).stdout, /stored +1000 blocks in S3 so far: still listing the volume/);

      assert.deepEqual(await readBlock(m, 1400), expected(1400), 'stored, not listed yet');
      assert.deepEqual(await readBlock(m, 1800), Buffer.alloc(BS), 'absent, not listed yet: zeros');
      assert.deepEqual(await readBlock(m, 10), expected(10), 'listed');
      assert.ok((await zeroMap(m)).unlistedReads >= 2);

      const end = Date.now() + HOLD_MS * 3;
      while ((await zeroMap(m)).listing) {
        assert.ok(Date.now() < end, 'the background LIST did not end');
        await new Promise((r) => setTimeout(r, 200));
      }
      const z2 = await zeroMap(m);
      assert.equal(z2.stored, STORED);
      assert.match((await runCli(['stats', m.dir], s3.env)).stdout, /stored +1500 blocks in S3\n/);
      const gets = (await m.stats()).s3.get;
      assert.deepEqual(await readBlock(m, 2000), Buffer.alloc(BS));
      assert.equal((await m.stats()).s3.get, gets, 'once listed, an absent block costs no GET');
      await m.unmount();
      mounts.delete(m);
    } finally {
      await proxy.stop();
    }
  });

  test('writes during the LIST win over its later pages; hydrate --wait waits for the whole LIST', async () => {
    const proxy = await slowListing();
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const m = await mount('rw', env, 'read-write');
      assert.equal((await zeroMap(m)).listing, true);
      const fresh = randomBytes(BS);
      await writeBlock(m, 1200, Buffer.alloc(BS)); // stored, listed in the held page: now zeros (deleted)
      await writeBlock(m, 1900, fresh); // absent: now stored
      assert.equal((await zeroMap(m)).listing, true, 'the writes came before the held page');

      const h = await runCli(['hydrate', '--wait', m.dir], env);
      assert.equal(h.code, 0, h.stderr);
      // Plain progress lines (stderr is not a terminal): the total once the LIST is done, not the part listed when it began.
      assert.match(h.stderr, /^hydrate: 1500 blocks \(.+\) to do$/m, h.stderr);
      assert.doesNotMatch(h.stderr, /^hydrate: 1001 blocks/m);
      const hs = (await m.stats()).hydration as { done: number; total: number };
      assert.deepEqual([hs.done, hs.total], [STORED, STORED], 'every stored block, not just the first page');
      assert.equal((await zeroMap(m)).listing, false);
      await m.unmount();
      mounts.delete(m);

      const st = await runCli(['status', '--json', url], s3.env);
      assert.equal(st.code, 0, st.stderr);
      assert.equal(JSON.parse(st.stdout).blocksStored, STORED);
      const check = await mount('check', s3.env, 'read-only');
      assert.deepEqual(await readBlock(check, 1200), Buffer.alloc(BS), 'the delete held');
      assert.deepEqual(await readBlock(check, 1900), fresh);
      assert.deepEqual(await readBlock(check, 1201), expected(1201));
      await check.unmount();
      mounts.delete(check);
    } finally {
      await proxy.stop();
    }
  });
});
