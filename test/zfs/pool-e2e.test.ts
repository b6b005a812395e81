// A real ZFS pool on an s3zmount volume, end to end, on one s3rver and one
// 1 GiB volume, in three sequential steps:
//   1. zfs-fuse builds a pool on a read-write mount: a dataset, >200 MiB of
//      seeded files, snapshot s1, changes (rewrite, in-place patch, append,
//      new file), snapshot s2, files removed; export; unmount.
//   2. A cold --read-only mount (empty cache): OpenZFS zdb imports the pool,
//      verifies every block's checksum (-bcc) and copies files out of both
//      snapshots; the device fetched lazily (fewer GETs than blocks stored).
//   3. An --overlay mount: zfs-fuse imports the pool read-write, reads and
//      writes, exports; S3 is exactly as before (same keys, ETags) and the
//      mount sent no PUT or DELETE.
//
// To give "lazy" a meaning under zdb -bcc (which reads every block the pool
// references), step 1 also writes a 96 MiB scratch file, syncs it to the disk
// (through a snapshot) and destroys it: its blocks stay stored in S3 (zfs-fuse
// never TRIMs) but no longer belong to the pool, so a lazy device never GETs them.
//
// Mount layout: zfs-fuse runs in its own mount namespace; the s3zmount mount
// point lives under a `sharedDirs` directory so the namespace sees it. Teardown
// order is therefore: zpool export, `s3zmount unmount`, stop zfs-fuse (the
// harness's shared bind mount cannot be undone while the FUSE mount is under it).
// zdb -e -p and `zpool import -d` are pointed at the mount directory itself: the
// `stats` file there reports size 0, so both skip it.
//
// Before commit d9eb49f (cache: an upload could mark a newer write clean) step 1
// left ~80 blocks in S3 without their last write: zdb -bcc found ~80 checksum
// errors in step 2 and zfs-fuse got EIO in step 3, while the writer's own cache
// was right. This test is what shows such a bug; keep it running.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { listVolume, mountVolume, type ListedObject, type Mounted, type MountStats } from '../helpers/mount.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import {
  cleanupStack,
  requireZfs,
  runZdb,
  seededBytes,
  seededChunks,
  seededSha256,
  sha256File,
  sha256Hex,
  startZfsFuse,
  tmpDir,
  zdbCheck,
  zdbCopyFile,
  type ZfsFuse,
} from '../helpers/zfs.js';

const MiB = 1 << 20;

type Files = Record<string, string>; // relative path -> sha256

interface Built {
  s1: Files;
  s2: Files;
  /** what the live dataset holds after the removals (s2 minus removed) */
  head: Files;
  removed: string[];
}

function elapsed(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

/** sha256 of seeded(seed, size) followed by `tail`. */
function seededPlusSha256(seed: string, size: number, tail: Buffer): string {
  const h = createHash('sha256');
  for (const c of seededChunks(seed, size)) h.update(c);
  h.update(tail);
  return h.digest('hex');
}

/** Exports the pool if this daemon still has it imported (for cleanups). */
async function exportIfImported(z: ZfsFuse, pool: string): Promise<void> {
  if (!z.running) return;
  if (!(await z.pools()).includes(pool)) return;
  try {
    await z.zpool('export', pool);
  } catch {
    await z.zpool('export', '-f', pool);
  }
}

/**
 * cleanupStack(t), but a cleanup that fails is also printed: node:test (v20)
 * does not report an after-hook error of a test that has already failed, and a
 * cleanup that did not happen must never go unnoticed.
 */
function cleanups(t: TestContext): (fn: () => unknown) => void {
  const defer = cleanupStack(t);
  return (fn) =>
    defer(async () => {
      try {
        await fn();
      } catch (e) {
        console.error(`[${t.name}] cleanup failed: ${(e as Error).message}`);
        throw e;
      }
    });
}

/** Runs tasks with at most `n` at once. */
async function limit<T>(n: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array<T>(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, tasks.length) }, async () => {
      for (let i = next++; i < tasks.length; i = next++) results[i] = await (tasks[i] as () => Promise<T>)();
    }),
  );
  return results;
}

describe('a zfs-fuse pool on an s3zmount volume, end to end', { timeout: 1_500_000 }, () => {
  let s3: TestS3 | undefined;
  let url = '';
  const pool = `e2e${randomBytes(3).toString('hex')}`;
  let built: Built | undefined;
  let blocksStored = 0;

  const env = (): Record<string, string> => {
    if (s3 === undefined) throw new Error('S3 did not start');
    return s3.env;
  };
  const status = async (): Promise<{ blocksStored: number; bytesStored: number; lease: unknown }> => {
    const r = await runCli(['status', url, '--json'], env());
    assert.equal(r.code, 0, `status --json: ${r.stderr}`);
    return JSON.parse(r.stdout) as { blocksStored: number; bytesStored: number; lease: unknown };
  };

  before(async () => {
    s3 = await startS3();
    url = s3.url('pool');
    const r = await runCli(['create', url, '--size', '1G'], s3.env);
    assert.equal(r.code, 0, `create: ${r.stderr}`);
  });
  after(async () => {
    await s3?.stop();
  });

  test('1. zfs-fuse builds a pool with snapshots on a read-write mount', { timeout: 600_000 }, async (t) => {
    if (!requireZfs(t, { zdb: true })) return;
    const defer = cleanups(t);
    const dir = await tmpDir(defer, 's3z-e2e-build-');
    const shared = path.join(dir, 'shared');
    const mnt = path.join(shared, 'mnt');
    await mkdir(mnt, { recursive: true });
    const t0 = Date.now();

    const z = await startZfsFuse({ sharedDirs: [shared] });
    defer(() => z.stop());
    const m = await mountVolume({ env: env(), url, dir: mnt, cacheDir: path.join(dir, 'cache'), logFile: path.join(dir, 'daemon.log') });
    defer(() => m.cleanup());
    defer(() => exportIfImported(z, pool));
    t.diagnostic(`read-write mount: ${m.mountMs} ms`);
    assert.doesNotMatch(m.mountStderr, /NodeVersionSupportWarning/, 'the CLI prints no SDK warning');

    let t1 = Date.now();
    await z.zpool('create', '-m', path.join(dir, 'zmnt', pool), pool, path.join(mnt, 'disk'));
    await z.zfs('create', `${pool}/fs`);
    const fs = path.join(dir, 'zmnt', pool, 'fs');
    await z.run('mkdir', ['-p', path.join(fs, 'dir/sub')]);
    t.diagnostic(`zpool create + zfs create: ${elapsed(t1)}`);

    // s1: 216 MiB in files of various sizes, some not record-aligned
    const v1: Record<string, { seed: string; size: number }> = {
      'big.bin': { seed: 'big', size: 64 * MiB },
      'a.bin': { seed: 'a', size: 40 * MiB },
      'b.bin': { seed: 'b', size: 32 * MiB + 4097 },
      'dir/c.bin': { seed: 'c', size: 24 * MiB },
      'dir/sub/d.bin': { seed: 'd', size: 16 * MiB - 1 },
      'gone1.bin': { seed: 'gone1', size: 20 * MiB },
      'dir/gone2.bin': { seed: 'gone2', size: 12 * MiB + 511 },
      'e.bin': { seed: 'e', size: 8 * MiB },
      'small.txt': { seed: 'small', size: 100 },
    };
    t1 = Date.now();
    const s1: Files = {};
    let bytes = 0;
    for (const [name, { seed, size }] of Object.entries(v1)) {
      const sum = await z.writeSeededFile(path.join(fs, name), size, seed);
      assert.equal(sum, seededSha256(seed, size), name);
      s1[name] = sum;
      bytes += size;
    }
    assert.ok(bytes >= 200 * MiB);
    t.diagnostic(`wrote ${(bytes / MiB).toFixed(0)} MiB in ${Object.keys(s1).length} files: ${elapsed(t1)} (${(bytes / MiB / ((Date.now() - t1) / 1000)).toFixed(1)} MiB/s)`);
    t1 = Date.now();
    for (const [name, sum] of Object.entries(s1)) assert.equal(await z.sha256(path.join(fs, name)), sum, `s1 ${name} read back`);
    t.diagnostic(`read back s1: ${elapsed(t1)}`);
    await z.zfs('snapshot', `${pool}/fs@s1`);

    // s2: rewrite one file, patch another in place (unaligned), append to a
    // third, add one
    t1 = Date.now();
    const s2: Files = { ...s1 };
    s2['b.bin'] = await z.writeSeededFile(path.join(fs, 'b.bin'), 20 * MiB + 3, 'b-v2');
    const patchAt = 5 * MiB + 12345;
    const patch = seededBytes('a-patch', 3 * MiB);
    await z.run('dd', [`of=${path.join(fs, 'a.bin')}`, 'bs=1M', `seek=${patchAt}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none'], { input: patch });
    const a2 = seededBytes('a', 40 * MiB);
    patch.copy(a2, patchAt);
    s2['a.bin'] = sha256Hex(a2);
    const append = seededBytes('c-append', MiB + 17);
    await z.run('sh', ['-c', 'cat >> "$1"', 'sh', path.join(fs, 'dir/c.bin')], { input: append });
    s2['dir/c.bin'] = seededPlusSha256('c', 24 * MiB, append);
    s2['new.bin'] = await z.writeSeededFile(path.join(fs, 'new.bin'), 16 * MiB, 'new');
    for (const [name, sum] of Object.entries(s2)) assert.equal(await z.sha256(path.join(fs, name)), sum, `s2 ${name} read back`);
    await z.zfs('snapshot', `${pool}/fs@s2`);
    t.diagnostic(`changes + snapshot s2: ${elapsed(t1)}`);

    // remove a set of files: two from s1 (and s2), one only in s2
    const removed = ['gone1.bin', 'dir/gone2.bin', 'new.bin'];
    await z.run('rm', ['--', ...removed.map((f) => path.join(fs, f))]);
    const head: Files = Object.fromEntries(Object.entries(s2).filter(([name]) => !removed.includes(name)));

    // scratch data that reaches the disk and then leaves the pool (see the top)
    t1 = Date.now();
    await z.writeSeededFile(path.join(fs, 'scratch.bin'), 96 * MiB, 'scratch');
    await z.zfs('snapshot', `${pool}/fs@scratch`);
    await z.run('rm', ['--', path.join(fs, 'scratch.bin')]);
    await z.zfs('destroy', `${pool}/fs@scratch`);
    t.diagnostic(`scratch 96 MiB written and freed: ${elapsed(t1)}`);

    const snaps = (await z.zfs('list', '-H', '-t', 'snapshot', '-o', 'name')).trim().split('\n').sort();
    assert.deepEqual(snaps, [`${pool}/fs@s1`, `${pool}/fs@s2`]);
    assert.equal((await z.zpool('list', '-H', '-o', 'name,health', pool)).trim(), `${pool}\tONLINE`);

    t1 = Date.now();
    await z.zpool('export', pool);
    t.diagnostic(`zpool export: ${elapsed(t1)}`);
    const st = await m.stats();
    t.diagnostic(`read-write mount stats before unmount: s3 get ${st.s3.get} put ${st.s3.put} delete ${st.s3.delete}, dirty ${st.dirtyBlocks}, fuse ${JSON.stringify(st.fuse)}`);
    t1 = Date.now();
    const unmountMs = await m.unmount({ timeoutMs: 300_000 });
    t.diagnostic(`unmount (flush + lease release): ${unmountMs} ms`);
    await z.stop();

    const s = await status();
    assert.equal(s.lease, null, 'unmount released the lease');
    blocksStored = s.blocksStored;
    assert.ok(blocksStored > 216 + 96 && blocksStored <= 1024, `blocks stored: ${blocksStored}`);
    t.diagnostic(`blocks stored: ${blocksStored} (${(s.bytesStored / MiB).toFixed(0)} MiB)`);
    built = { s1, s2, head, removed };
    t.diagnostic(`step 1 total: ${elapsed(t0)}`);
  });

  test('2. a cold read-only mount: zdb verifies the pool and copies files out of both snapshots, lazily', { timeout: 600_000 }, async (t) => {
    if (!requireZfs(t, { zdb: true })) return;
    assert.ok(built !== undefined, 'step 1 did not complete');
    const defer = cleanups(t);
    const dir = await tmpDir(defer, 's3z-e2e-ro-');
    const mnt = path.join(dir, 'mnt');
    const cache = path.join(dir, 'cache');
    await mkdir(mnt);
    await mkdir(cache);
    assert.deepEqual(await readdir(cache), [], 'the cache starts empty');
    const t0 = Date.now();

    const m = await mountVolume({ env: env(), url, dir: mnt, mode: 'read-only', cacheDir: cache, logFile: path.join(dir, 'daemon.log') });
    defer(() => m.cleanup());
    t.diagnostic(`read-only mount: ${m.mountMs} ms`);
    assert.doesNotMatch(m.mountStderr, /NodeVersionSupportWarning/, 'the CLI prints no SDK warning');
    assert.deepEqual((await readdir(mnt)).sort(), ['disk', 'stats']);
    const atMount = await m.stats();

    // zdb -e -p DIR probes every file in DIR; `stats` is too small to hold
    // a label. Point it at the mount directory itself.
    const vdevDir = mnt;

    // cold import: zdb imports the pool and lists its datasets
    let t1 = Date.now();
    const ds = await runZdb(['-e', '-p', vdevDir, '-d', pool], { timeoutMs: 300_000 });
    const importMs = Date.now() - t1;
    const afterImport = await m.stats();
    assert.match(ds.stdout, new RegExp(`Dataset ${pool}/fs@s1 `));
    assert.match(ds.stdout, new RegExp(`Dataset ${pool}/fs@s2 `));
    const importGets = afterImport.s3.get - atMount.s3.get;
    t.diagnostic(`cold import (zdb -e -d): ${importMs} ms, ${importGets} GETs (${atMount.s3.get} at mount), ${(afterImport.s3.bytesIn - atMount.s3.bytesIn) / MiB} MiB in`);
    assert.ok(importGets < blocksStored / 4, `a cold import fetched ${importGets} of ${blocksStored} blocks`);

    // every block's checksum
    t1 = Date.now();
    const check = await zdbCheck(pool, vdevDir, { timeoutMs: 500_000 });
    const afterCheck = await m.stats();
    assert.ok(check.ok, `zdb -bcc reported problems:\n${check.problems.join('\n')}\n${check.output.slice(-5000)}`);
    assert.ok((check.blocks ?? 0) > 1000, `few blocks traversed: ${check.blocks}`);
    t.diagnostic(`zdb -bcc: ${elapsed(t1)}, ${check.blocks} block pointers, GETs now ${afterCheck.s3.get}`);

    // files out of both snapshots, including those removed since
    t1 = Date.now();
    const out = path.join(dir, 'out');
    await mkdir(out);
    const copies: { snap: string; name: string; dest: string; sum: string }[] = [];
    for (const [snap, files] of [['s1', built.s1], ['s2', built.s2]] as const) {
      for (const [name, sum] of Object.entries(files)) copies.push({ snap, name, sum, dest: path.join(out, `${snap}-${name.replaceAll('/', '_')}`) });
    }
    for (const f of built.removed) assert.ok(copies.some((c) => c.name === f), `${f} is checked in a snapshot`);
    await limit(2, copies.map((c) => () => zdbCopyFile(`${pool}/fs@${c.snap}`, c.name, c.dest, vdevDir)));
    const bad: string[] = [];
    for (const c of copies) {
      const got = await sha256File(c.dest);
      if (got !== c.sum) bad.push(`${c.snap}:${c.name}: expected ${c.sum}, got ${got}`);
      await rm(c.dest);
    }
    assert.deepEqual(bad, [], 'files copied out of the snapshots');
    t.diagnostic(`zdb -r of ${copies.length} files: ${elapsed(t1)}`);

    const st = await m.stats();
    t.diagnostic(
      `read-only stats: s3 get ${st.s3.get}, put ${st.s3.put}, delete ${st.s3.delete}, list ${st.s3.list}, ${(st.s3.bytesIn / MiB).toFixed(0)} MiB in, ` +
        `retries ${st.s3.retries}, stale ${st.s3.stale}, corrupt ${st.s3.corrupt}; cache hit ${st.cache.hit} miss ${st.cache.miss}; ` +
        `prefetch ${JSON.stringify(st.prefetch)}; blocks stored ${blocksStored}`,
    );
    assert.ok(st.s3.get < blocksStored, `reads were not lazy: ${st.s3.get} GETs for ${blocksStored} blocks stored`);
    assert.equal(st.s3.put, 0, 'a read-only mount PUTs nothing');
    assert.equal(st.s3.delete, 0, 'a read-only mount DELETEs nothing');
    assert.equal(st.s3.corrupt, 0);

    const unmountMs = await m.unmount();
    t.diagnostic(`unmount: ${unmountMs} ms; step 2 total: ${elapsed(t0)}`);
  });

  test('3. an overlay mount: zfs-fuse imports, reads and writes; S3 is unchanged', { timeout: 600_000 }, async (t) => {
    if (!requireZfs(t, { zdb: false })) return;
    assert.ok(built !== undefined, 'step 1 did not complete');
    const defer = cleanups(t);
    const dir = await tmpDir(defer, 's3z-e2e-overlay-');
    const shared = path.join(dir, 'shared');
    const mnt = path.join(shared, 'mnt');
    const altroot = path.join(dir, 'altroot');
    await mkdir(mnt, { recursive: true });
    await mkdir(altroot);
    const t0 = Date.now();

    const listedBefore: ListedObject[] = await listVolume(s3 as TestS3, url);
    assert.ok(listedBefore.length > blocksStored, `listing: ${listedBefore.length} objects`);

    const z = await startZfsFuse({ sharedDirs: [shared] });
    defer(() => z.stop());
    const m: Mounted = await mountVolume({ env: env(), url, dir: mnt, mode: 'overlay', cacheDir: path.join(dir, 'cache'), logFile: path.join(dir, 'daemon.log') });
    defer(() => m.cleanup());
    defer(() => exportIfImported(z, pool));
    t.diagnostic(`overlay mount: ${m.mountMs} ms`);
    assert.doesNotMatch(m.mountStderr, /NodeVersionSupportWarning/, 'the CLI prints no SDK warning');
    const atMount: MountStats = await m.stats();

    // cold import by zfs-fuse, read-write, under an altroot in this test's dir
    let t1 = Date.now();
    await z.zpool('import', '-d', mnt, '-R', altroot, pool);
    const importMs = Date.now() - t1;
    const afterImport = await m.stats();
    t.diagnostic(`cold zpool import (zfs-fuse, overlay): ${importMs} ms, ${afterImport.s3.get - atMount.s3.get} GETs, ${((afterImport.s3.bytesIn - atMount.s3.bytesIn) / MiB).toFixed(1)} MiB in`);
    const fsMount = (await z.zfs('get', '-H', '-o', 'value', 'mountpoint', `${pool}/fs`)).trim();
    assert.ok(fsMount.startsWith(altroot + '/'), `fs mounted at ${fsMount}`);
    const snaps = (await z.zfs('list', '-H', '-t', 'snapshot', '-o', 'name')).trim().split('\n').sort();
    assert.deepEqual(snaps, [`${pool}/fs@s1`, `${pool}/fs@s2`]);

    // the live files: s2 minus the removed ones
    t1 = Date.now();
    const listed = (await z.run('find', [fsMount, '-type', 'f', '-printf', '%P\\n'])).trim().split('\n').sort();
    assert.deepEqual(listed, Object.keys(built.head).sort());
    for (const [name, sum] of Object.entries(built.head)) assert.equal(await z.sha256(path.join(fsMount, name)), sum, `head ${name}`);
    t.diagnostic(`read back ${Object.keys(built.head).length} files: ${elapsed(t1)}`);

    // local writes
    t1 = Date.now();
    const mine: Files = {};
    mine['overlay-new.bin'] = await z.writeSeededFile(path.join(fsMount, 'overlay-new.bin'), 32 * MiB, 'overlay-new');
    mine['small.txt'] = await z.writeSeededFile(path.join(fsMount, 'small.txt'), 4096 + 3, 'small-v2');
    await z.run('rm', ['--', path.join(fsMount, 'e.bin')]);
    await z.zfs('snapshot', `${pool}/fs@overlay`);
    for (const [name, sum] of Object.entries(mine)) assert.equal(await z.sha256(path.join(fsMount, name)), sum, `overlay ${name}`);
    t.diagnostic(`overlay writes + snapshot: ${elapsed(t1)}`);

    t1 = Date.now();
    await z.zpool('export', pool);
    t.diagnostic(`zpool export: ${elapsed(t1)}`);
    const st = await m.stats();
    t.diagnostic(
      `overlay stats: s3 get ${st.s3.get}, put ${st.s3.put}, delete ${st.s3.delete}; dirty ${st.dirtyBlocks}; overlay ${JSON.stringify(st.overlay)}; fuse ${JSON.stringify(st.fuse)}`,
    );
    const fuse = st.fuse as { writes?: number; bytesWritten?: number } | undefined;
    assert.ok((fuse?.bytesWritten ?? 0) > 32 * MiB, 'zfs-fuse wrote to the device');
    assert.equal(st.s3.put, 0, 'an overlay mount PUTs nothing');
    assert.equal(st.s3.delete, 0, 'an overlay mount DELETEs nothing');

    const unmountMs = await m.unmount();
    t.diagnostic(`unmount: ${unmountMs} ms`);
    await z.stop();

    const afterList = await listVolume(s3 as TestS3, url);
    const keyEtag = (l: ListedObject[]): string[] => l.map((o) => `${o.key} ${o.etag} ${o.size}`);
    assert.deepEqual(keyEtag(afterList), keyEtag(listedBefore), 'S3 keys and ETags are exactly as before the overlay mount');
    assert.deepEqual(
      afterList.map((o) => `${o.key} ${o.lastModified}`),
      listedBefore.map((o) => `${o.key} ${o.lastModified}`),
      'no object was rewritten (LastModified unchanged)',
    );
    t.diagnostic(`S3 listing unchanged: ${afterList.length} objects; step 3 total: ${elapsed(t0)}`);
  });
});
