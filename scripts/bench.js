#!/usr/bin/env node
// npm run bench — s3zmount against Debian's s3backer and against the ceilings,
// on one machine: s3rver (the product's `local-s3`) behind the latency proxy of
// the tests (dist-test/helpers/fault-proxy.js), the whole set once per latency.
//
//   node scripts/bench.js [--quick] [--latency 0,20] [--size 1G] [--out docs/BENCHMARKS.md]
//                         [--cpu-prof DIR] [--json FILE] [--skip LIST]
//
// --quick      256M, latency 0 only (unless --latency is given), short fio runs,
//              a smaller zfs pool, a shorter FUSE ceiling; under 3 minutes.
// A full run writes docs/BENCHMARKS.md unless --out says otherwise; a partial one
// (--quick, --skip, --latency or --size) writes a report only to --out, so it never
// replaces the full report with some of its rows.
// --cpu-prof   run every s3zmount process with node --cpu-prof into DIR (summarise
//              with `node scripts/bench/profile-summary.js DIR/*.cpuprofile`).
// --skip       comma list of: fuse, raw, image, seq, rand, zfs, rss1t, s3backer.
// --json FILE  also write every figure, and each mount's own counters, as JSON.
// --from-json FILE  measure nothing: render the tables of an earlier --json file
//              (to stdout, and to --out when given).
//
// Run after `npm run build`, as root (FUSE mounts, zfs-fuse namespaces,
// drop_caches). Everything it starts is stopped by pid at the end, also on
// failure and on SIGINT/SIGTERM; every mount is unmounted.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { defer, dropCaches, memStatus, installSignalHandlers, log, machine, run, runCleanups, runOk, settle } from './bench/proc.js';
import { rawCeiling, startS3Env } from './bench/s3env.js';
import { imageBench } from './bench/image.js';
import { parseSize, s3backerArgs, s3backerTool, s3zmountTool } from './bench/tools.js';
import { ddRead, ddWrite, fioRandRead, fioRandWrite, zdbWorkload, zfsPoolWorkload } from './bench/workloads.js';
import { renderMarkdown, renderText } from './bench/report.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1 << 20;

// ---------------------------------------------------------------------------
// options

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    latency: { type: 'string' },
    size: { type: 'string' },
    out: { type: 'string' },
    'cpu-prof': { type: 'string' },
    json: { type: 'string' },
    'from-json': { type: 'string' },
    skip: { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: false,
});
if (opt.help) {
  console.log('usage: node scripts/bench.js [--quick] [--latency 0,20] [--size 1G] [--out docs/BENCHMARKS.md] [--cpu-prof DIR] [--json FILE] [--skip fuse,raw,image,seq,rand,zfs,rss1t,s3backer]');
  process.exit(0);
}
if (opt['from-json']) {
  const report = JSON.parse(readFileSync(resolve(opt['from-json']), 'utf8'));
  console.log(renderText(report));
  if (opt.out) {
    writeFileSync(resolve(opt.out), renderMarkdown(report));
    console.log(`\nwritten: ${resolve(opt.out)}`);
  }
  process.exit(0);
}
const quick = opt.quick;
const latencies = (opt.latency ?? (quick ? '0' : '0,20')).split(',').map((s) => Number(s.trim()));
if (latencies.some((l) => !(l >= 0) || !Number.isFinite(l))) usage(`--latency: bad list ${opt.latency}`);
const size = (opt.size ?? (quick ? '256M' : '1G')).toUpperCase();
let sizeBytes;
try {
  sizeBytes = parseSize(size);
} catch {
  usage(`--size: bad size ${opt.size}`);
}
if (sizeBytes < 64 * MiB || sizeBytes % MiB !== 0) usage('--size must be a whole number of MiB, at least 64M');
const skip = new Set(opt.skip.split(',').map((s) => s.trim()).filter(Boolean));
const partial = quick || skip.size > 0 || opt.latency !== undefined || opt.size !== undefined;
const outFile = opt.out ?? (partial ? undefined : join(ROOT, 'docs/BENCHMARKS.md'));
const cpuProfDir = opt['cpu-prof'] ? resolve(opt['cpu-prof']) : undefined;

const P = quick
  ? { fioWarmS: 4, zfsFiles: 4, zfsFileMiB: 32, zfsVol: '512M', fuseMiB: 512, fuseRuns: 1, rawCount: 128, rss1tMiB: 16 }
  : { fioWarmS: 15, zfsFiles: 8, zfsFileMiB: 64, zfsVol: '1G', fuseMiB: 2048, fuseRuns: 3, rawCount: 512, rss1tMiB: 64 };

function usage(msg) {
  console.error(`bench: ${msg}`);
  process.exit(2);
}

const command = `node scripts/bench.js ${process.argv.slice(2).join(' ')}`.trim();

// ---------------------------------------------------------------------------
// prerequisites

function prerequisites() {
  const missing = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const f of ['dist/cli.js', 'build/Release/s3zfuse.node', 'dist-test/helpers/fault-proxy.js', 'dist-test/helpers/zfs.js']) {
    if (!existsSync(join(ROOT, f))) missing.push(`${f} (npm run build)`);
  }
  if (!existsSync('/dev/fuse')) missing.push('/dev/fuse');
  return missing;
}

// ---------------------------------------------------------------------------
// one tool, one latency

const MB = (bytes, ms) => bytes / 1e6 / (ms / 1000);

/** Runs fn, records its result or error under res[name]; never throws. */
async function phase(res, name, fn) {
  try {
    res[name] = await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`${name} FAILED: ${msg}`);
    res[name] = { error: msg.split('\n')[0].slice(0, 300) };
    res.errors.push(`${name}: ${msg.slice(0, 2000)}`);
  }
}

/**
 * One tool's workloads at one latency, a phase at a time: it yields after each phase so
 * that the driver can run the tools' phases in turns (each pair under the same load).
 * Its return value is the results.
 */
async function* suite(tool, { s3, work, src, lat }) {
  const res = { errors: [], rss: 0 };
  const tag = `${tool.name}-${lat}ms`;
  const base = join(work, tag);
  mkdirSync(base, { recursive: true });
  // Peak RSS (VmHWM) and, at the same moment, the resident anonymous and file-backed
  // (e.g. LMDB's map) parts.
  // The tool's own counters go into the JSON results (--json) too.
  const noteRss = (m) => {
    const r = memStatus(m.pid);
    if (r?.hwm !== undefined) res.rss = Math.max(res.rss, r.hwm);
    try {
      (res.toolStats ??= []).push({ dir: m.dir, stats: m.stats() });
    } catch {
      // no stats file
    }
    return r;
  };
  let vol;

  if (!skip.has('seq') || !skip.has('rand')) {
    await phase(res, 'write', async () => {
      vol = await tool.newVolume('seq', size);
      const m = await tool.mount(vol, join(base, 'w'));
      settle(`${tag}: sequential write`);
      await s3.resetCounts();
      log(`${tag}: sequential write of ${size} (dd bs=1M oflag=direct conv=fsync)`);
      const t0 = performance.now();
      let dd;
      try {
        dd = await ddWrite(src, m.device, sizeBytes);
      } catch (e) {
        await m.unmount().catch((e2) => log(`${tag}: unmount after a failed write: ${e2.message}`));
        throw e;
      }
      const dirtyAfterFsync = tool.name === 's3zmount' ? m.stats().dirtyBlocks : undefined;
      const rss = noteRss(m);
      const unmountMs = await m.unmount();
      const totalMs = performance.now() - t0;
      const counts = await s3.counts();
      const stored = await tool.blocksStored(vol);
      // s3zmount: fsync is the barrier, so dd's time is the time to S3. s3backer answers
      // fsync at once and uploads afterwards: its write ends when its process has exited.
      const ms = tool.name === 's3zmount' ? dd.ms : totalMs;
      const r = { ms, MBps: MB(dd.bytes, ms), ddMs: dd.ms, ddMBps: MB(dd.bytes, dd.ms), unmountMs, totalMs, bytes: dd.bytes, counts, rss, stored, dirtyAfterFsync };
      log(`${tag}: write ${r.MBps.toFixed(1)} MB/s to S3 (dd ${dd.ms.toFixed(0)} ms, unmount ${unmountMs.toFixed(0)} ms), ${stored} blocks stored`);
      if (stored !== Math.round(sizeBytes / MiB)) throw new Error(`${stored} block objects stored after the write, expected ${sizeBytes / MiB}`);
      if (dirtyAfterFsync) log(`${tag}: WARNING ${dirtyAfterFsync} dirty blocks after fsync returned`);
      return r;
    });
    yield;
  }

  if (!skip.has('seq') && vol && !res.write.error) {
    await phase(res, 'seqRead', async () => {
      const m = await tool.mount(vol, join(base, 'r'), { readOnly: true });
      try {
        const dropped = dropCaches();
        await s3.resetCounts();
        log(`${tag}: cold sequential read (dd bs=1M iflag=direct)`);
        const cold = await ddRead(m.device, sizeBytes);
        cold.counts = await s3.counts();
        cold.MBps = MB(cold.bytes, cold.ms);
        await s3.resetCounts();
        log(`${tag}: warm sequential read`);
        const warm = await ddRead(m.device, sizeBytes);
        warm.counts = await s3.counts();
        warm.MBps = MB(warm.bytes, warm.ms);
        let fioWarm;
        if (!skip.has('rand')) {
          await s3.resetCounts();
          log(`${tag}: warm random 4K reads (fio, ${P.fioWarmS} s)`);
          fioWarm = await fioRandRead(m.device, sizeBytes, { seconds: P.fioWarmS });
          fioWarm.counts = await s3.counts();
        }
        const rss = noteRss(m);
        log(`${tag}: cold ${cold.MBps.toFixed(1)} MB/s, warm ${warm.MBps.toFixed(1)} MB/s${fioWarm ? `, warm fio ${fioWarm.iops.toFixed(0)} IOPS` : ''}`);
        return { cold, warm, fioWarm, rss, dropped };
      } finally {
        await m.unmount();
      }
    });
    yield;
  }

  if (!skip.has('rand') && vol && !res.write.error) {
    await phase(res, 'randCold', async () => {
      const m = await tool.mount(vol, join(base, 'r2'), { readOnly: true });
      try {
        dropCaches();
        await s3.resetCounts();
        const ios = Math.round(sizeBytes / MiB / 2);
        log(`${tag}: cold random 4K reads (fio, ${ios} reads over ${sizeBytes / MiB} blocks)`);
        const f = await fioRandRead(m.device, sizeBytes, { ios });
        f.counts = await s3.counts();
        f.rss = noteRss(m);
        log(`${tag}: cold fio ${f.iops.toFixed(0)} IOPS, ${f.counts.get} GETs`);
        return f;
      } finally {
        await m.unmount();
      }
    });
    yield;
  }

  if (!skip.has('rand')) {
    await phase(res, 'randWrite', async () => {
      // A new volume: blocks never written need no fetch, for either tool.
      const wvol = await tool.newVolume('randw', size);
      const m = await tool.mount(wvol, join(base, 'rw'));
      settle(`${tag}: random write`);
      await s3.resetCounts();
      log(`${tag}: random 4K writes (fio, ${P.fioWarmS} s, no fsync), then unmount`);
      let f;
      try {
        f = await fioRandWrite(m.device, sizeBytes, { seconds: P.fioWarmS });
      } catch (e) {
        await m.unmount().catch((e2) => log(`${tag}: unmount after a failed random write: ${e2.message}`));
        throw e;
      }
      f.rss = noteRss(m);
      // Both tools write back: the writes are in S3 once the unmount is over (s3backer's
      // process has exited), as for the sequential write. fio's own time includes its
      // close(), which for s3zmount is a barrier (uploads what is dirty).
      f.unmountMs = await m.unmount();
      f.totalMs = f.ms + f.unmountMs;
      f.counts = await s3.counts();
      f.iopsToS3 = f.ios / (f.totalMs / 1000);
      log(`${tag}: random write ${f.iops.toFixed(0)} IOPS during fio, ${f.iopsToS3.toFixed(0)} until in S3 (unmount ${f.unmountMs.toFixed(0)} ms), ${f.counts.put} PUTs`);
      return f;
    });
    yield;
  }

  if (!skip.has('zfs')) {
    let zvol;
    await phase(res, 'zfs', async () => {
      zvol = await tool.newVolume('zfs', P.zfsVol);
      const shared = join(base, 'zfs');
      mkdirSync(shared, { recursive: true });
      settle(`${tag}: zfs`);
      await s3.resetCounts();
      log(`${tag}: zfs-fuse pool on a ${P.zfsVol} volume, ${P.zfsFiles} files of ${P.zfsFileMiB} MiB, export`);
      const z = await zfsPoolWorkload({
        root: ROOT,
        sharedDir: shared,
        mountFn: () => tool.mount(zvol, join(shared, 'mnt')),
        src,
        srcBytes: sizeBytes,
        fileCount: P.zfsFiles,
        fileBytes: P.zfsFileMiB * MiB,
      });
      const rss = noteRss(z.m);
      const unmountMs = await z.m.unmount();
      const counts = await s3.counts();
      await z.stopZfs();
      // In S3 once exported and unmounted (for s3zmount the export's fsyncs already are barriers).
      const durableMs = z.writeMs + z.exportMs + unmountMs;
      const r = { createMs: z.createMs, writeMs: z.writeMs, exportMs: z.exportMs, unmountMs, durableMs, bytes: z.bytes, MBps: MB(z.bytes, durableMs), counts, rss };
      log(`${tag}: zfs write ${(z.writeMs / 1000).toFixed(1)} s, export ${(z.exportMs / 1000).toFixed(1)} s, unmount ${(unmountMs / 1000).toFixed(1)} s`);
      return r;
    });
    yield;
    if (zvol && !res.zfs.error) {
      await phase(res, 'zdb', async () => {
        const dir = join(base, 'ro');
        const m = await tool.mount(zvol, dir, { readOnly: true });
        try {
          dropCaches();
          log(`${tag}: zdb -d (cold read-only "import") and zdb -r of one ${P.zfsFileMiB} MiB file`);
          const dest = join(base, 'zdb-f0.out');
          const r = await zdbWorkload({ root: ROOT, dir, file: 'f0', dest, counts: s3.counts, resetCounts: s3.resetCounts });
          rmSync(dest, { force: true });
          if (r.fileBytes !== P.zfsFileMiB * MiB) throw new Error(`zdb -r copied ${r.fileBytes} bytes, expected ${P.zfsFileMiB * MiB}`);
          r.rss = noteRss(m);
          r.readMBps = MB(r.fileBytes, r.readMs);
          log(`${tag}: zdb import ${(r.importMs / 1000).toFixed(1)} s (${r.importCounts.get} GETs), file ${(r.readMs / 1000).toFixed(1)} s (${r.readCounts.get} GETs)`);
          return r;
        } finally {
          await m.unmount();
        }
      });
      yield;
    }
  }
  return res;
}

/** s3zmount's daemon on a 1 TiB volume: mount, write and read a little, peak RSS. */
async function rss1T({ s3, work }) {
  const tool = s3zmountTool({ root: ROOT, s3, work, cpuProfDir });
  const vol = await tool.newVolume('big', '1T');
  const m = await tool.mount(vol, join(work, 'rss1t'));
  try {
    const pieces = 16;
    const per = P.rss1tMiB / pieces;
    const TiBinMiB = 1024 * 1024;
    for (let i = 0; i < pieces; i++) {
      const seek = Math.floor((i * TiBinMiB) / pieces) + 7;
      await runOk('dd', ['if=/dev/urandom', `of=${m.device}`, 'bs=1M', `count=${per}`, `seek=${seek}`, 'oflag=direct', 'conv=fsync,notrunc']);
    }
    for (let i = 0; i < pieces; i++) {
      const skipAt = Math.floor((i * TiBinMiB) / pieces) + 7;
      await runOk('dd', [`if=${m.device}`, 'of=/dev/null', 'bs=1M', `count=${per}`, `skip=${skipAt}`, 'iflag=direct']);
    }
    // a few reads of never-written areas (zeros) far apart
    await runOk('dd', [`if=${m.device}`, 'of=/dev/null', 'bs=1M', 'count=64', `skip=${TiBinMiB - 64}`, 'iflag=direct']);
    const mem = memStatus(m.pid);
    const stats = m.stats();
    return { rss: mem?.hwm, mem, written: P.rss1tMiB * MiB, mountMs: m.mountMs, cacheBlocks: stats.cache?.blocks };
  } finally {
    await m.unmount();
  }
}

/** The FUSE ceiling: scripts/bench-fuse.js as a child (its C no-op filesystem and the JS binding). */
async function fuseCeiling() {
  log(`FUSE ceiling: npm run bench:fuse (S3Z_BENCH_MIB=${P.fuseMiB} S3Z_BENCH_RUNS=${P.fuseRuns})`);
  const r = await run(process.execPath, [join(ROOT, 'scripts/bench-fuse.js')], {
    cwd: ROOT,
    env: { ...process.env, S3Z_BENCH_MIB: String(P.fuseMiB), S3Z_BENCH_RUNS: String(P.fuseRuns) },
    timeoutMs: 900_000,
  });
  const line = r.stdout.split('\n').find((l) => l.trim().startsWith('{'));
  if (r.code !== 0 || !line) throw new Error(`bench-fuse.js exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  return JSON.parse(line);
}

/** The commit measured, and whether the product's sources differed from it. */
function gitState() {
  const git = (args) => {
    const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : undefined;
  };
  const head = git(['log', '-1', '--format=%h %s']);
  const changed = (git(['status', '--porcelain', '--', 'src', 'native', 'package.json', 'package-lock.json']) ?? '')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(3));
  return { head, changed };
}

// ---------------------------------------------------------------------------
// main

async function main() {
  const missing = prerequisites();
  if (missing.length > 0) {
    console.error(`bench: missing: ${missing.join(', ')}`);
    return 1;
  }
  installSignalHandlers();
  const started = new Date();
  const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const source = gitState();
  // The 1-minute load average every 5 s: other work on this machine moves the figures.
  const load1 = [];
  const loadTimer = setInterval(() => load1.push(Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])), 5000);
  loadTimer.unref();
  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), 's3z-bench-'));
  defer(`remove ${work}`, () => rmSync(work, { recursive: true, force: true }));
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const notes = [];
  const results = { latencies: {}, errors: [] };

  // Source data: random, in RAM (drop_caches does not touch tmpfs), so that it is not all
  // zeros (which s3zmount stores as no object at all) and reading it costs nothing.
  const shm = existsSync('/dev/shm') ? '/dev/shm' : work;
  const src = join(shm, `s3z-bench-src-${process.pid}`);
  defer(`remove ${src}`, () => rmSync(src, { force: true }));
  await runOk('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', `count=${sizeBytes / MiB}`, 'iflag=fullblock']);

  if (!skip.has('fuse')) {
    try {
      results.fuse = await fuseCeiling();
      log(`FUSE ceiling: ${JSON.stringify(results.fuse)}`);
    } catch (e) {
      results.errors.push(`FUSE ceiling: ${e.message}`);
      log(`FUSE ceiling FAILED: ${e.message}`);
    }
  } else notes.push('FUSE ceiling skipped (--skip fuse).');

  const s3 = await startS3Env({ root: ROOT, dataDir: join(work, 's3rver') });
  try {
    for (const lat of latencies) {
      await s3.setLatency(lat);
      log(`=== latency ${lat} ms per request ===`);
      const L = { tools: {} };
      results.latencies[lat] = L;
      if (!skip.has('raw')) {
        try {
          L.raw = await rawCeiling(s3, { count: P.rawCount });
        } catch (e) {
          results.errors.push(`raw S3 ceiling at ${lat} ms: ${e.message}`);
        }
      }
      if (!skip.has('image')) {
        try {
          L.image = await imageBench(s3, { root: ROOT, src, bytes: sizeBytes, work, cpuProfDir });
        } catch (e) {
          L.image = { error: e.message.split('\n')[0].slice(0, 300) };
          results.errors.push(`put/get image at ${lat} ms: ${e.message}`);
        }
      }
      const tools = [s3zmountTool({ root: ROOT, s3, work: join(work, `z${lat}`), cpuProfDir })];
      if (!skip.has('s3backer')) tools.push(s3backerTool({ s3 }));
      // Phase by phase, the tools in turns: s3zmount's write, s3backer's write, s3zmount's
      // reads... so that each pair runs after the same kind of work, not one tool's whole
      // suite after the image rows and the other's after the first tool's zdb.
      let running = tools.map((tool) => ({ tool, steps: suite(tool, { s3, work, src, lat }) }));
      while (running.length > 0) {
        const left = [];
        for (const run of running) {
          const step = await run.steps.next();
          if (!step.done) {
            left.push(run);
            continue;
          }
          L.tools[run.tool.name] = step.value;
          for (const e of step.value.errors) results.errors.push(`${run.tool.name} at ${lat} ms, ${e}`);
        }
        running = left;
      }
    }
    if (!skip.has('rss1t')) {
      await s3.setLatency(0);
      try {
        log('s3zmount on a 1 TiB volume: peak RSS');
        results.rss1t = await rss1T({ s3, work: join(work, 'big') });
        log(`1 TiB volume: VmHWM ${(results.rss1t.rss / MiB).toFixed(0)} MiB`);
      } catch (e) {
        results.errors.push(`1 TiB RSS: ${e.message}`);
      }
    }
  } finally {
    await s3.stop();
  }

  if (quick) notes.push(`--quick: ${size} instead of 1G, latency ${latencies.join(',')} ms only${opt.latency ? '' : ' (pass --latency to add more)'}, warm fio ${P.fioWarmS} s, zfs pool ${P.zfsFiles} x ${P.zfsFileMiB} MiB on ${P.zfsVol}, FUSE ceiling ${P.fuseMiB} MiB x ${P.fuseRuns} run, raw ceiling ${P.rawCount} objects.`);
  for (const s of skip) notes.push(`skipped: ${s}`);
  if (!dropCaches()) notes.push('could not write /proc/sys/vm/drop_caches (not root?): cold reads may be warm in the page cache.');

  const report = {
    command,
    date: started.toISOString(),
    durationS: (performance.now() - t0) / 1000,
    source,
    machine: { ...machine(), loadAtStart, load1Min: load1.length ? Math.min(...load1) : undefined, load1Max: load1.length ? Math.max(...load1) : undefined },
    quick,
    size,
    latencies,
    params: P,
    s3backerArgs: s3backerArgs('http://127.0.0.1:PROXYPORT', { size, readOnly: false }).join(' '),
    notes,
    results,
  };
  const text = renderText(report);
  console.log(text);
  if (outFile) {
    mkdirSync(dirname(outFile), { recursive: true });
    writeFileSync(outFile, renderMarkdown(report));
    console.log(`\nwritten: ${outFile}`);
  } else {
    console.log('\n(no report file written: a partial run (--quick, --skip, --latency, --size) writes one only with --out FILE)');
  }
  if (opt.json) writeFileSync(resolve(opt.json), JSON.stringify(report, null, 2));
  if (results.errors.length > 0) {
    console.error(`\nbench: ${results.errors.length} error(s):`);
    for (const e of results.errors) console.error(`- ${e}`);
    return 1;
  }
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  code = 1;
} finally {
  const errors = await runCleanups();
  for (const e of errors) console.error(`bench: cleanup: ${e}`);
  if (errors.length > 0) code = 1;
}
process.exit(code);
