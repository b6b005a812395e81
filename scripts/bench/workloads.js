// Workloads on a mounted device: dd writes and reads, fio random reads, a
// zfs-fuse pool, and zdb reading an exported pool. Each returns what it
// measured; timing is wall-clock around the command.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { defer, log, run, runOk } from './proc.js';

const MiB = 1 << 20;

/** Sequential write of `bytes` from `src`, 1 MiB direct writes, fsync at the end. */
export async function ddWrite(src, device, bytes) {
  const count = Math.round(bytes / MiB);
  const r = await runOk('dd', [`if=${src}`, `of=${device}`, 'bs=1M', `count=${count}`, 'iflag=fullblock', 'oflag=direct', 'conv=fsync,notrunc'], {
    env: { ...process.env, LC_ALL: 'C' },
    timeoutMs: 3_600_000,
  });
  checkDd(r.stderr, count * MiB);
  return { ms: r.ms, bytes: count * MiB };
}

/** Sequential read of `bytes`, 1 MiB direct reads. */
export async function ddRead(device, bytes) {
  const count = Math.round(bytes / MiB);
  const r = await runOk('dd', [`if=${device}`, 'of=/dev/null', 'bs=1M', `count=${count}`, 'iflag=direct'], {
    env: { ...process.env, LC_ALL: 'C' },
    timeoutMs: 3_600_000,
  });
  checkDd(r.stderr, count * MiB);
  return { ms: r.ms, bytes: count * MiB };
}

function checkDd(stderr, want) {
  const m = /(\d+) bytes .* copied/.exec(stderr);
  if (!m || Number(m[1]) !== want) throw new Error(`dd moved ${m?.[1] ?? '?'} bytes, expected ${want}: ${stderr.trim()}`);
}

/**
 * fio random 4 KiB reads, iodepth 16, libaio, O_DIRECT, over the first `bytes` of the
 * device: for `seconds` (time-bounded) or `ios` reads (size-bounded).
 */
export function fioRandRead(device, bytes, { seconds, ios }) {
  return fioRandom('randread', device, bytes, { seconds, ios });
}

/** fio random 4 KiB writes, as fioRandRead, for `seconds`; no fsync (write-back, as the tools cache it). */
export function fioRandWrite(device, bytes, { seconds }) {
  return fioRandom('randwrite', device, bytes, { seconds });
}

async function fioRandom(rw, device, bytes, { seconds, ios }) {
  const args = [
    `--name=${rw}`,
    `--filename=${device}`,
    `--rw=${rw}`,
    '--bs=4k',
    '--iodepth=16',
    '--ioengine=libaio',
    '--direct=1',
    `--size=${bytes}`,
    ...(ios ? [`--io_size=${ios * 4096}`] : ['--time_based', `--runtime=${seconds}`]),
    ...(rw === 'randread' ? ['--readonly'] : []),
    '--norandommap',
    '--randrepeat=0',
    '--output-format=json',
  ];
  const r = await runOk('fio', args, { timeoutMs: ((seconds ?? 0) + 600) * 1000 });
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  const job = json.jobs[0];
  const io = rw === 'randread' ? job.read : job.write;
  return {
    ms: r.ms,
    runtimeMs: io.runtime,
    bytes: io.io_bytes,
    ios: io.total_ios,
    iops: io.iops,
    MBps: io.io_bytes / 1e6 / (io.runtime / 1000),
    latP50us: (io.clat_ns?.percentile?.['50.000000'] ?? 0) / 1000,
    latP99us: (io.clat_ns?.percentile?.['99.000000'] ?? 0) / 1000,
    errors: job.error,
  };
}

// ---------------------------------------------------------------------------
// zfs-fuse and zdb (the project's test harness, compiled)

let zfsModule;
export async function zfsHarness(root) {
  zfsModule ??= await import(pathToFileURL(join(root, 'dist-test/helpers/zfs.js')).href);
  return zfsModule;
}

export const POOL = 'benchpool';

/**
 * A zfs-fuse pool on a mounted device: create it, write `fileCount` files of
 * `fileBytes` (from `src`, random), snapshot, export. The device must be
 * mounted under `sharedDir` AFTER zfs-fuse started, so `mountFn` is called
 * here. Returns timings and the mount (still mounted; the caller unmounts it).
 */
export async function zfsPoolWorkload({ root, sharedDir, mountFn, src, srcBytes, fileCount, fileBytes }) {
  const { startZfsFuse, findTool } = await zfsHarness(root);
  const z = await startZfsFuse({ sharedDirs: [sharedDir] });
  const stopZ = defer(`zfs-fuse pid ${z.pid}`, () => z.stop());
  let m;
  try {
    m = await mountFn();
    const zpool = findTool('zpool');
    const zfs = findTool('zfs');
    const long = { timeoutMs: 3_600_000 };
    const t0 = performance.now();
    await z.run(zpool, ['create', '-m', join(sharedDir, 'poolmnt'), POOL, m.device], long);
    await z.run(zfs, ['create', `${POOL}/fs`], long);
    const createMs = performance.now() - t0;
    const t1 = performance.now();
    const count = Math.round(fileBytes / MiB);
    for (let i = 0; i < fileCount; i++) {
      await z.run('dd', [`if=${src}`, `of=${join(sharedDir, 'poolmnt', 'fs', `f${i}`)}`, 'bs=1M', `count=${count}`, `skip=${(i * count) % Math.max(1, Math.floor(srcBytes / MiB) - count + 1)}`, 'iflag=fullblock'], long);
    }
    const writeMs = performance.now() - t1;
    await z.run(zfs, ['snapshot', `${POOL}/fs@snap`], long);
    const t2 = performance.now();
    await z.run(zpool, ['export', POOL], long);
    const exportMs = performance.now() - t2;
    return { m, createMs, writeMs, exportMs, bytes: fileCount * count * MiB, stopZfs: stopZ };
  } catch (e) {
    // the pool must be exported before the device goes away: stop() does that
    await stopZ().catch((e2) => log(`stopping zfs-fuse: ${e2.message}`));
    if (m) await m.unmount().catch((e2) => log(`unmount after zfs failure: ${e2.message}`));
    throw new Error(`zfs-fuse workload: ${e.message}\nzfs-fuse log: ${z.log().slice(-2000)}`);
  }
}

/** zdb "import" (-d: open the pool, list datasets) and one file copied out of the snapshot. */
export async function zdbWorkload({ root, dir, file, dest, counts, resetCounts }) {
  const { runZdb } = await zfsHarness(root);
  await resetCounts();
  let t = performance.now();
  await runZdb(['-e', '-p', dir, '-d', POOL], { timeoutMs: 3_600_000 });
  const importMs = performance.now() - t;
  const importCounts = await counts();
  await resetCounts();
  t = performance.now();
  await runZdb(['-e', '-p', dir, '-r', `${POOL}/fs@snap`, file, dest], { timeoutMs: 3_600_000 });
  const readMs = performance.now() - t;
  const readCounts = await counts();
  const size = Number((await runOk('stat', ['-c', '%s', dest])).stdout.trim());
  return { importMs, importCounts, readMs, readCounts, fileBytes: size };
}

export { run };
