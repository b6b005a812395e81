// The device end to end: the built CLI mounts a volume on a real s3rver through
// real FUSE; the test writes, zeroes and punches holes through the kernel, and
// checks S3 and cold remounts against a reference. Also fsync as a barrier, crash
// recovery after kill -9, the lease, and mount errors.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ROOT, startS3, type TestS3 } from '../helpers/s3.js';
import { runCli } from '../helpers/cli.js';
import { rawClient } from '../helpers/mount.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

if (process.env.CI === 'true') assert.ok(existsSync('/dev/fuse'), 'CI needs /dev/fuse');
const skip = existsSync('/dev/fuse') ? false : 'no /dev/fuse';

let s3: TestS3;
let work: string;
const mounted = new Set<string>();

before(async () => {
  s3 = await startS3();
  work = await mkdtemp(path.join(tmpdir(), 's3z-device-'));
});

after(async () => {
  for (const dir of mounted) await forceUnmount(dir);
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function statsOf(dir: string): Promise<Record<string, any>> {
  return JSON.parse(await readFile(path.join(dir, 'stats'), 'utf8')) as Record<string, any>;
}

/** Mounts through the CLI (background mode); returns the daemon's pid. */
async function mountVolume(url: string, name: string, extra: string[] = [], env: Record<string, string> = s3.env): Promise<{ dir: string; pid: number }> {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const r = await runCli(['mount', url, dir, '--cache-dir', path.join(work, `${name}.cache`), ...extra], env);
  assert.equal(r.code, 0, `mount failed: ${r.stderr}`);
  mounted.add(dir);
  const pid = (await statsOf(dir)).pid as number;
  return { dir, pid };
}

async function unmount(dir: string): Promise<void> {
  const r = await runCli(['unmount', dir], s3.env);
  assert.equal(r.code, 0, `unmount failed: ${r.stderr}`);
  mounted.delete(dir);
}

/** Cleanup that works whatever state the mount is in. */
async function forceUnmount(dir: string): Promise<void> {
  try {
    const pid = (await statsOf(dir)).pid as number;
    process.kill(pid, 'SIGKILL');
  } catch {
    // daemon already gone
  }
  await run('fusermount3', ['-u', '-z', dir]).catch(() => {});
  mounted.delete(dir);
}

async function objects(url: string): Promise<Map<string, string>> {
  const { bucket, prefix } = { bucket: url.split('/')[2] ?? '', prefix: url.split('/').slice(3).join('/') };
  const client = rawClient(s3);
  const out = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/blocks/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.set(o.Key ?? '', o.ETag ?? '');
    token = page.NextContinuationToken;
  } while (token);
  client.destroy();
  return out;
}

/** A seeded generator of integers below n, so a failing round can be run again. */
function seeded(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
}

/** Changes one block of the open device through the kernel, and the reference with it. */
async function changeBlock(fh: FileHandle, disk: string, ref: Buffer, bs: number, block: number, change: 'piece' | 'whole' | 'zeros' | 'hole', rand: (n: number) => number): Promise<void> {
  if (change === 'piece') {
    const at = block * bs + rand(bs / 4096) * 4096;
    const data = randomBytes(4096);
    await fh.write(data, 0, data.length, at);
    data.copy(ref, at);
  } else if (change === 'whole') {
    const data = randomBytes(bs);
    await fh.write(data, 0, bs, block * bs);
    data.copy(ref, block * bs);
  } else if (change === 'zeros') {
    await fh.write(Buffer.alloc(bs), 0, bs, block * bs);
    ref.fill(0, block * bs, (block + 1) * bs);
  } else {
    await run('fallocate', ['--punch-hole', '--keep-size', '--offset', String(block * bs), '--length', String(bs), disk]);
    ref.fill(0, block * bs, (block + 1) * bs);
  }
}

async function writeFileAt(file: string, data: Buffer, at: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function sha256Of(file: string, size: number): Promise<string> {
  const fh = await open(file, 'r');
  const hash = createHash('sha256');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (let at = 0; at < size; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - at), at);
      assert.ok(bytesRead > 0, `short read at ${at}`);
      hash.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

describe('device', { skip }, () => {
  test('random writes, zero writes and holes match a reference; fsync is a barrier; a cold read-only remount reads the same bytes', async () => {
    const BS = 64 * 1024;
    const SIZE = 64 * MiB;
    const url = s3.url('dev');
    assert.equal((await runCli(['create', url, '--size', String(SIZE), '--block-size', String(BS)], s3.env)).code, 0);
    const { dir, pid } = await mountVolume(url, 'rw1');
    // The daemon starts with room in its old generation (mount-commands.ts says why).
    assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--initial-old-space-size=64'), 'daemon heap flag');
    const ref = Buffer.alloc(SIZE);
    const fh = await open(path.join(dir, 'disk'), 'r+');
    let seed = 1;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    try {
      for (let op = 0; op < 300; op++) {
        const kind = rand(10);
        const offset = rand(SIZE - 1);
        const length = Math.min(SIZE - offset, 1 + rand(kind < 2 ? 3 * BS : BS / 2));
        if (kind < 6) {
          const data = randomBytes(length);
          await fh.write(data, 0, length, offset);
          data.copy(ref, offset);
        } else if (kind < 8) {
          await fh.write(Buffer.alloc(length), 0, length, offset);
          ref.fill(0, offset, offset + length);
        } else {
          await run('fallocate', ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), path.join(dir, 'disk')]);
          ref.fill(0, offset, offset + length);
        }
      }
      // Whole blocks zeroed by a hole must lose their objects.
      await run('fallocate', ['--punch-hole', '--keep-size', '--offset', String(4 * BS), '--length', String(8 * BS), path.join(dir, 'disk')]);
      ref.fill(0, 4 * BS, 12 * BS);
      await fh.sync();
      // Right after fsync, before any unmount, S3 holds exactly the non-zero blocks.
      let nonZero = 0;
      for (let i = 0; i < SIZE / BS; i++) if (!ref.subarray(i * BS, (i + 1) * BS).equals(Buffer.alloc(BS))) nonZero++;
      const objs = await objects(url);
      assert.equal(objs.size, nonZero, 'objects in S3 = non-zero blocks of the reference');
      const st = await statsOf(dir);
      assert.equal(st.dirtyBlocks, 0);
      assert.ok(st.s3.delete > 0, 'holes deleted objects');
      const back = Buffer.alloc(SIZE);
      await fh.read(back, 0, SIZE, 0);
      assert.ok(back.equals(ref), 'the mount reads back the reference');
    } finally {
      await fh.close();
    }
    await unmount(dir);
    const cold = await mountVolume(url, 'ro1', ['--read-only']);
    assert.equal(await sha256Of(path.join(cold.dir, 'disk'), SIZE), createHash('sha256').update(ref).digest('hex'));
    const st = await statsOf(cold.dir);
    assert.equal(st.mode, 'read-only');
    assert.equal(st.s3.put, 0);
    // The kernel's 128 KiB reads of cold 64 KiB blocks got their bytes from the verified
    // fetch, before its file write (and the bytes were right: the digest above).
    assert.ok(st.cache.fromFetch! > 0, `reads answered from the fetch: ${JSON.stringify(st.cache)}`);
    await assert.rejects(open(path.join(cold.dir, 'disk'), 'r+'), /EROFS|EACCES/);
    await unmount(cold.dir);
  });

  test('direct reads (answered by libfuse threads from the cache files) stay right through rewrites, zero writes, holes and eviction', async () => {
    const BS = 64 * 1024;
    const BLOCKS = 48;
    const url = s3.url('direct');
    assert.equal((await runCli(['create', url, '--size', String(BLOCKS * BS), '--block-size', String(BS)], s3.env)).code, 0);
    // Room for 16 clean blocks of the 48: reads and writes keep evicting.
    const { dir } = await mountVolume(url, 'direct', ['--cache-size', String(16 * BS)]);
    const ref = randomBytes(BLOCKS * BS);
    const disk = path.join(dir, 'disk');
    const fh = await open(disk, 'r+');
    const rand = seeded(7);
    try {
      await fh.write(ref, 0, ref.length, 0);
      await fh.sync();
      for (let round = 0; round < 40; round++) {
        // One block changes (new bytes, zeros, or a hole) while eight 4 KiB reads of other
        // blocks are in flight, each checked against the reference.
        const block = rand(BLOCKS);
        const change = changeBlock(fh, disk, ref, BS, block, (['whole', 'zeros', 'hole'] as const)[rand(3)]!, rand);
        const reads = Array.from({ length: 8 }, async () => {
          const at = ((block + 1 + rand(BLOCKS - 1)) % BLOCKS) * BS + rand(BS / 4096) * 4096;
          const out = Buffer.alloc(4096);
          await fh.read(out, 0, 4096, at);
          assert.ok(out.equals(ref.subarray(at, at + 4096)), `round ${round}: 4 KiB at ${at}`);
        });
        await Promise.all([change, ...reads]);
        // The changed block, now that its change is acknowledged.
        const out = Buffer.alloc(4096);
        await fh.read(out, 0, 4096, block * BS + 8192);
        assert.ok(out.equals(ref.subarray(block * BS + 8192, block * BS + 12288)), `round ${round}: block ${block} after its change`);
        if (round % 10 === 9) await fh.sync();
      }
      await fh.sync();
      const back = Buffer.alloc(ref.length);
      for (let i = 0; i < BLOCKS; i++) await fh.read(back, i * BS, BS, i * BS); // one block per read: direct when granted
      assert.ok(back.equals(ref), 'every block reads back as the reference');
      const st = await statsOf(dir);
      assert.ok(st.fuse.direct.reads > 0, `reads were answered directly (${JSON.stringify(st.fuse.direct)})`);
      assert.ok(st.cache.hit >= st.fuse.direct.reads && st.fuse.reads >= st.fuse.direct.reads, 'and counted as hits and reads');
      const text = await runCli(['stats', dir], s3.env);
      assert.match(text.stdout, /cache +\d+ hits? \(\d+ answered by libfuse's threads\)/);
      assert.ok(st.cache.evictions > 0, 'blocks were evicted meanwhile');
    } finally {
      await fh.close();
    }
    await unmount(dir);
  });

  test('overlay: untouched blocks are read directly, written ones never from the cache\'s copy; kill -9 keeps acknowledged writes; S3 never changes', async () => {
    const BS = 64 * 1024;
    const BLOCKS = 48;
    const url = s3.url('overlay-direct');
    assert.equal((await runCli(['create', url, '--size', String(BLOCKS * BS), '--block-size', String(BS)], s3.env)).code, 0);
    const ref = randomBytes(BLOCKS * BS);
    const w = await mountVolume(url, 'ovd');
    await writeFileAt(path.join(w.dir, 'disk'), ref, 0);
    await unmount(w.dir);
    const stored = await objects(url);
    // The same cache dir: every block is cached, verified at its first read, then granted.
    const ov = await mountVolume(url, 'ovd', ['--overlay']);
    const disk = path.join(ov.dir, 'disk');
    let fh = await open(disk, 'r+');
    const rand = seeded(11);
    const check = async (at: number, what: string) => {
      const out = Buffer.alloc(4096);
      await fh.read(out, 0, 4096, at);
      assert.ok(out.equals(ref.subarray(at, at + 4096)), `${what}: 4 KiB at ${at}`);
    };
    try {
      for (let i = 0; i < BLOCKS; i++) await check(i * BS, 'first read');
      for (let round = 0; round < 40; round++) {
        const block = rand(BLOCKS);
        const change = changeBlock(fh, disk, ref, BS, block, (['piece', 'whole', 'zeros', 'hole'] as const)[rand(4)]!, rand);
        const reads = Array.from({ length: 8 }, () => check(((block + 1 + rand(BLOCKS - 1)) % BLOCKS) * BS + rand(BS / 4096) * 4096, `round ${round}`));
        await Promise.all([change, ...reads]);
        for (let at = 0; at < BS; at += 4096) await check(block * BS + at, `round ${round}: block ${block} after its change`);
      }
      const st = await statsOf(ov.dir);
      assert.ok(st.fuse.direct.reads > 0, `untouched blocks were read directly (${JSON.stringify(st.fuse.direct)})`);
      assert.ok(st.overlay.hits > 0 && st.overlay.blocks > 0, `written blocks were read from the overlay (${JSON.stringify(st.overlay)})`);
      // Acknowledged, not fsynced, then kill -9.
      const last = randomBytes(BS);
      await fh.write(last, 0, BS, 5 * BS);
      last.copy(ref, 5 * BS);
      process.kill(ov.pid, 'SIGKILL');
    } finally {
      await fh.close().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 200));
    await run('fusermount3', ['-u', '-z', ov.dir]).catch(() => {});
    mounted.delete(ov.dir);
    const again = await mountVolume(url, 'ovd', ['--overlay']);
    fh = await open(path.join(again.dir, 'disk'), 'r');
    try {
      const back = Buffer.alloc(ref.length);
      await fh.read(back, 0, back.length, 0);
      assert.ok(back.equals(ref), 'every acknowledged overlay write survived the kill -9');
    } finally {
      await fh.close();
    }
    await unmount(again.dir);
    assert.deepEqual(await objects(url), stored, 'S3 holds what it held before the overlay mounts');
  });

  test('one writer: a second read-write mount is refused with the holder; read-only refuses without --force', async () => {
    const url = s3.url('lease');
    assert.equal((await runCli(['create', url, '--size', '16M'], s3.env)).code, 0);
    const first = await mountVolume(url, 'lease1');
    const status = JSON.parse((await runCli(['status', url, '--json'], s3.env)).stdout) as { lease: { holder: string } | null };
    assert.ok(status.lease, 'status shows the lease');
    assert.match(status.lease.holder, new RegExp(`pid ${first.pid} on ${first.dir}`));
    const dir2 = path.join(work, 'lease2');
    await mkdir(dir2);
    const second = await runCli(['mount', url, dir2, '--cache-dir', path.join(work, 'lease2.cache')], s3.env);
    assert.equal(second.code, 1);
    assert.match(second.stderr.trim(), new RegExp(`^s3zmount: .*mounted read-write by .*pid ${first.pid} on ${first.dir}.*--force`));
    const ro = await runCli(['mount', '--read-only', url, dir2, '--cache-dir', path.join(work, 'lease2.cache')], s3.env);
    assert.equal(ro.code, 1);
    assert.match(ro.stderr, /mounted read-write by/);
    const forced = await mountVolume(url, 'lease2', ['--read-only', '--force']);
    await unmount(forced.dir);
    await unmount(first.dir);
    const after = JSON.parse((await runCli(['status', url, '--json'], s3.env)).stdout) as { lease: unknown };
    assert.equal(after.lease, null, 'unmount released the lease');
    const again = await mountVolume(url, 'lease3');
    await unmount(again.dir);
  });

  test('kill -9 with dirty blocks: the next mount replays the journal; every acknowledged write is there', async () => {
    const BS = 256 * 1024;
    const SIZE = 128 * MiB;
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const url = s3.url('crash');
      assert.equal((await runCli(['create', url, '--size', String(SIZE), '--block-size', String(BS)], env)).code, 0);
      const { dir, pid } = await mountVolume(url, 'crash1', [], env);
      proxy.setLatency(300); // uploads lag behind: dirty blocks pile up
      const fh = await open(path.join(dir, 'disk'), 'r+');
      const acked = new Map<number, Buffer>();
      const fsynced = new Set<number>();
      let i = 0;
      try {
        for (; i < 40; i++) {
          const data = randomBytes(BS);
          await fh.write(data, 0, BS, i * BS);
          acked.set(i, data);
          if (i === 10) {
            await fh.sync();
            for (const k of acked.keys()) fsynced.add(k);
          }
        }
        const st = await statsOf(dir);
        assert.ok(st.dirtyBlocks > 0, `dirty blocks at the crash: ${st.dirtyBlocks}`);
        process.kill(pid, 'SIGKILL');
      } finally {
        await fh.close().catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 200));
      await run('fusermount3', ['-u', '-z', dir]).catch(() => {});
      mounted.delete(dir);
      proxy.setLatency(0);
      const again = await mountVolume(url, 'crash1', [], env);
      const st = await statsOf(again.dir);
      assert.ok(st.cache.replayed > 0, 'the journal was replayed');
      assert.equal(st.dirtyBlocks, 0, 'replayed before serving');
      const objs = await objects(url);
      assert.equal(objs.size, acked.size, 'every acknowledged block is in S3 after the replay');
      const fh2 = await open(path.join(again.dir, 'disk'), 'r');
      try {
        for (const [k, data] of acked) {
          const back = Buffer.alloc(BS);
          await fh2.read(back, 0, BS, k * BS);
          assert.ok(back.equals(data), `block ${k}${fsynced.has(k) ? ' (fsynced)' : ''} survived the crash`);
        }
      } finally {
        await fh2.close();
      }
      await unmount(again.dir);
    } finally {
      await proxy.stop();
    }
  });

  test('kill -9 in a loop under 128 KiB writes: after each replay every acknowledged write is there, and S3 ends up with it', async () => {
    const BS = 256 * 1024;
    const SLOT = 128 * 1024; // ZFS's record size: two pieces per block, so partial writes
    const SLOTS = 96;
    const ROUNDS = 4;
    const seed0 = Number(process.env.S3Z_TEST_SEED ?? Date.now() % 100_000);
    const rand = seeded(seed0);
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint, { history: false, latencyMs: 100 }); // uploads lag: kills find dirty blocks
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const url = s3.url('crashloop');
      assert.equal((await runCli(['create', url, '--size', String(16 * MiB), '--block-size', String(BS)], env)).code, 0);
      const content = (seed: number): Buffer => Buffer.alloc(SLOT, createHash('sha256').update(String(seed)).digest());
      // Per slot: the last write that returned, and the one in flight at the kill (either may be there).
      const acked = new Map<number, number>();
      const inFlight = new Map<number, number>();
      let seeds = 1;
      /**
       * Reads every slot and checks it against what was acknowledged; an in-flight write
       * found there is what the volume holds from now on. Returns the slots' bytes.
       */
      const check = async (disk: string, when: string): Promise<Buffer> => {
        const all = await readFile(disk);
        for (let slot = 0; slot < SLOTS; slot++) {
          const got = all.subarray(slot * SLOT, (slot + 1) * SLOT);
          const flying = inFlight.get(slot);
          if (flying !== undefined && content(flying).equals(got)) {
            acked.set(slot, flying);
            continue;
          }
          const want = acked.has(slot) ? content(acked.get(slot)!) : Buffer.alloc(SLOT);
          assert.ok(want.equals(got), `${when}: slot ${slot} holds neither its acknowledged write (${acked.get(slot)}) nor the one in flight (${flying})`);
        }
        inFlight.clear();
        return all.subarray(0, SLOTS * SLOT);
      };
      let writes = 0;
      let dirtyAtKills = 0;
      for (let round = 1; round <= ROUNDS; round++) {
        const { dir, pid } = await mountVolume(url, 'crashloop', [], env);
        await check(path.join(dir, 'disk'), `seed ${seed0}, after crash ${round - 1}`);
        const fh = await open(path.join(dir, 'disk'), 'r+');
        // The kill lands while a write or an fsync is in flight.
        const killer = setTimeout(() => {
          statsOf(dir)
            .then((st) => (dirtyAtKills += st.dirtyBlocks as number))
            .catch(() => {})
            .finally(() => {
              try {
                process.kill(pid, 'SIGKILL');
              } catch {
                // already gone by itself: the remount's check says what that cost
              }
            });
        }, 300 + rand(1200));
        try {
          for (;;) {
            const slot = rand(SLOTS);
            const seed = seeds++;
            inFlight.set(slot, seed);
            try {
              // A write that returned is acknowledged (FUSE writes through to the daemon's
              // journal); every eighth is also fsynced, so the kills find uploads in flight.
              await fh.write(content(seed), 0, SLOT, slot * SLOT);
              if (seed % 8 === 0) await fh.sync();
            } catch {
              break; // the daemon is gone: this write was never acknowledged
            }
            inFlight.delete(slot);
            acked.set(slot, seed);
            writes++;
          }
        } finally {
          clearTimeout(killer);
          await fh.close().catch(() => {});
        }
        assert.ok(writes > round * 2, `writes were acknowledged before kill ${round} (${writes})`);
        await run('fusermount3', ['-u', '-z', dir]).catch(() => {});
        mounted.delete(dir);
      }
      assert.ok(dirtyAtKills > 0, 'the kills found blocks not yet in S3 (the journal had something to replay)');
      const last = await mountVolume(url, 'crashloop', [], env);
      const warm = await check(path.join(last.dir, 'disk'), `seed ${seed0}, after crash ${ROUNDS}`);
      await unmount(last.dir);
      // All of it in S3: a read-only mount with an empty cache reads the same bytes.
      const cold = await mountVolume(url, 'crashloop-cold', ['--read-only'], env);
      const fromS3 = (await readFile(path.join(cold.dir, 'disk'))).subarray(0, SLOTS * SLOT);
      assert.ok(fromS3.equals(warm), 'S3 holds what the last mount served');
      await unmount(cold.dir);
    } finally {
      await proxy.stop();
    }
  });

  test('a sequential write into large blocks sends each block once, even while uploads lag behind it', async () => {
    const BS = 4 * MiB;
    const COUNT = 24;
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint, { history: false });
    try {
      const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
      const url = s3.url('large-blocks');
      assert.equal((await runCli(['create', url, '--size', String(COUNT * BS), '--block-size', '4M'], env)).code, 0);
      // A 64 MiB cache: dirty data is bounded to 32 MiB, and 4 dirty blocks are pressure.
      const { dir } = await mountVolume(url, 'large-blocks', ['--cache-size', '64M'], env);
      // Every block PUT waits: uploads fall behind dd, as they do on a slow link.
      const puts = proxy.addRule({ name: 'block PUT', method: 'PUT', key: /\/blocks\//, times: Infinity, action: { delay: 300 } });
      const data = randomBytes(COUNT * BS);
      const src = path.join(work, 'large-blocks.src');
      const fh = await open(src, 'w');
      await fh.write(data, 0, data.length, 0);
      await fh.close();
      // 1 MiB pieces, each acknowledged before the next, fsync at the end.
      await run('dd', [`if=${src}`, `of=${path.join(dir, 'disk')}`, 'bs=1M', 'oflag=direct', 'conv=fsync,notrunc'], { env: { ...process.env, LC_ALL: 'C' } });
      assert.equal(proxy.fired(puts), COUNT, `${COUNT} blocks written in 1 MiB pieces cost ${proxy.fired(puts)} block PUTs`);
      const objs = await objects(url);
      assert.equal(objs.size, COUNT);
      assert.equal(await sha256Of(path.join(dir, 'disk'), COUNT * BS), createHash('sha256').update(data).digest('hex'));
      await unmount(dir);
      // A cold read-only remount read in 1 MiB requests: a read of a block being fetched is
      // answered with the fetched, verified bytes themselves, lent to its reply.
      const cold = await mountVolume(url, 'large-blocks-ro', ['--read-only'], env);
      const back = path.join(work, 'large-blocks.back');
      await run('dd', [`if=${path.join(cold.dir, 'disk')}`, `of=${back}`, 'bs=1M', 'iflag=direct'], { env: { ...process.env, LC_ALL: 'C' } });
      assert.ok((await readFile(back)).equals(data), 'the cold read gets the bytes written');
      const st = await statsOf(cold.dir);
      assert.ok(st.fuse.sliceReplies.lent > 0 && st.cache.fromFetch >= st.fuse.sliceReplies.lent, `replies lent from the fetch: ${JSON.stringify(st.fuse.sliceReplies)}`);
      await unmount(cold.dir);
    } finally {
      await proxy.stop();
    }
  });

  test('--hydrate pulls every stored block into the cache in the background', async () => {
    const BS = 64 * 1024;
    const url = s3.url('hydrate');
    assert.equal((await runCli(['create', url, '--size', '32M', '--block-size', String(BS)], s3.env)).code, 0);
    const w = await mountVolume(url, 'hyd-w');
    const fh = await open(path.join(w.dir, 'disk'), 'r+');
    const written = [3, 4, 100, 200, 311, 500];
    for (const i of written) await fh.write(Buffer.alloc(BS, i % 250 + 1), 0, BS, i * BS);
    await fh.close();
    await unmount(w.dir);
    const r = await mountVolume(url, 'hyd-r', ['--overlay', '--hydrate']);
    let st = await statsOf(r.dir);
    for (let n = 0; n < 100 && st.hydration.done < written.length; n++) {
      await new Promise((res) => setTimeout(res, 100));
      st = await statsOf(r.dir);
    }
    assert.deepEqual({ done: st.hydration.done, total: st.hydration.total, state: st.hydration.state }, { done: written.length, total: written.length, state: 'done' });
    assert.equal(st.s3.get, written.length + 2, 'one GET per stored block (plus descriptor and lease)');
    const before = st.s3.get;
    const back = await readFile(path.join(r.dir, 'disk'));
    for (const i of written) assert.ok(back.subarray(i * BS, (i + 1) * BS).equals(Buffer.alloc(BS, i % 250 + 1)), `block ${i}`);
    assert.equal((await statsOf(r.dir)).s3.get, before, 'reading the whole device after hydration costs no GET');
    await unmount(r.dir);
  });

  test('mount errors: missing directory, missing volume, busy mountpoint, no /dev/fuse', async () => {
    const url = s3.url('errs');
    const r1 = await runCli(['mount', url, path.join(work, 'nope')], s3.env);
    assert.equal(r1.code, 1);
    assert.match(r1.stderr.trim(), /^s3zmount: .*(no such directory|does not exist)/);
    await mkdir(path.join(work, 'errs'));
    const r2 = await runCli(['mount', url, path.join(work, 'errs')], s3.env);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr.trim(), /^s3zmount: .*no volume there/);
    assert.equal((await runCli(['create', url, '--size', '16M'], s3.env)).code, 0);
    const m = await mountVolume(url, 'errs', ['--read-only']);
    const r3 = await runCli(['mount', '--read-only', '--force', url, m.dir, '--cache-dir', path.join(work, 'errs2.cache')], s3.env);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr.trim(), /^s3zmount: .*(busy|already a mount point|in use)/i);
    assert.equal(r3.stderr.trim().split('\n').length, 1);
    await unmount(m.dir);
    const r4 = await runCli(['unmount', m.dir], s3.env);
    assert.equal(r4.code, 1);
    assert.match(r4.stderr, /not mounted/);
    // No /dev/fuse: a private mount namespace whose /dev has only what node needs.
    const script = [
      'mount -t tmpfs tmpfs /dev',
      'for n in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9"; do set -- $n; mknod -m 666 /dev/$1 c $2 $3; done',
      `exec "${process.execPath}" "${path.join(ROOT, 'dist', 'cli.js')}" mount --read-only "${url}" "${m.dir}" --cache-dir "${path.join(work, 'errs3.cache')}"`,
    ].join('; ');
    const r5 = await run('unshare', ['-m', 'bash', '-c', script], { env: { ...process.env, ...s3.env } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    assert.equal(r5.code, 1);
    assert.match(r5.stderr.trim(), /^s3zmount: cannot mount on .*: \/dev\/fuse does not exist/);
    // Something else where /dev/fuse should be (here /dev/null bound over it): one line, not the kernel's bare EINVAL.
    const bound = `mount --bind /dev/null /dev/fuse; exec "${process.execPath}" "${path.join(ROOT, 'dist', 'cli.js')}" mount --read-only "${url}" "${m.dir}" --cache-dir "${path.join(work, 'errs4.cache')}"`;
    const r6 = await run('unshare', ['-m', 'bash', '-c', bound], { env: { ...process.env, ...s3.env } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    assert.equal(r6.code, 1);
    assert.match(r6.stderr.trim(), /^s3zmount: cannot mount on .*: \/dev\/fuse is not the FUSE device/);
    assert.equal(r6.stderr.trim().split('\n').length, 1, r6.stderr);
  });
});
