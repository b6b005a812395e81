#!/usr/bin/env node
// npm run bench:fuse — throughput of the FUSE binding against a C reference.
// Builds native/bench/nullfs.c (cc + pkg-config fuse3) into build/bench/,
// mounts it and the JS no-op filesystem (scripts/bench-fuse/jsfs.js, served
// through dist/fuse/binding.js), runs 1 MiB sequential dd writes and reads
// (files opened with direct_io, so the page cache does not hide the fs), and
// prints ONE JSON line:
//   {"jsReadMBps":…,"jsWriteMBps":…,"cReadMBps":…,"cWriteMBps":…}
// (MB = 10^6 bytes; the best of S3Z_BENCH_RUNS runs, default 3). The JS fs keeps
// no write payload, so it mounts with writeBuffers "borrowed"; writes with "owned"
// payloads are measured too and reported on stderr only. Details go to stderr.
// Environment: S3Z_BENCH_MIB (MiB per run, default 2048), S3Z_BENCH_RUNS (default 3),
// S3Z_BENCH_THREADS (fuse worker threads of both filesystems, default 16).
// Run after `npm run build`. Needs root (or fusermount3) and /dev/fuse.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MIB_PER_RUN = Number(process.env.S3Z_BENCH_MIB ?? 2048);
const RUNS = Number(process.env.S3Z_BENCH_RUNS ?? 3);
const THREADS = Number(process.env.S3Z_BENCH_THREADS ?? 16);
const log = (...a) => console.error('[bench:fuse]', ...a);

function fail(msg) {
  console.error(`bench:fuse: ${msg}`);
  process.exit(1);
}

if (!(MIB_PER_RUN >= 1) || !(RUNS >= 1) || !(THREADS >= 1)) fail('bad S3Z_BENCH_* settings');
if (!existsSync(join(ROOT, 'dist/fuse/binding.js')) || !existsSync(join(ROOT, 'build/Release/s3zfuse.node'))) {
  fail('run `npm run build` first (dist/fuse/binding.js and build/Release/s3zfuse.node are needed)');
}
if (!existsSync('/dev/fuse')) fail('/dev/fuse does not exist');

/** Compiles the C reference filesystem; returns its path. */
function buildNullfs() {
  const out = join(ROOT, 'build/bench/nullfs');
  mkdirSync(dirname(out), { recursive: true });
  const pc = (flag) => execFileSync('pkg-config', [flag, 'fuse3'], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean);
  execFileSync('cc', ['-O2', '-Wall', '-DFUSE_USE_VERSION=312', ...pc('--cflags'), join(ROOT, 'native/bench/nullfs.c'), '-o', out, ...pc('--libs')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return out;
}

function isMounted(dir) {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

/** Starts a filesystem process and resolves once it printed "ready". */
function startFs(cmd, args, dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not get ready`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ready')) {
        clearTimeout(timer);
        // The C fs says ready from its INIT handler; wait for the mount table too.
        const wait = () => (isMounted(dir) ? resolve(child) : setTimeout(wait, 10));
        wait();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${code} before it was ready`));
    });
    child.on('error', reject);
  });
}

async function stopFs(child, dir) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15000);
    await exited;
    clearTimeout(t);
  }
  if (isMounted(dir)) {
    log(`${dir} still mounted after its server exited; detaching`);
    try {
      execFileSync('fusermount3', ['-u', '-z', dir], { stdio: 'ignore' });
    } catch {
      // reported by the final check
    }
  }
}

/** Runs dd and returns MB/s from its own timing. */
function dd(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('dd', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`dd ${args.join(' ')} failed: ${err.trim()}`));
      const m = /(\d+) bytes .* copied, ([\d.e+-]+) s/.exec(err);
      if (!m) return reject(new Error(`cannot parse dd output: ${err}`));
      resolve(Number(m[1]) / 1e6 / Number(m[2]));
    });
    child.on('error', reject);
  });
}

async function measure(name, cmd, args, dir, { reads = true } = {}) {
  const child = await startFs(cmd, args, dir);
  const file = join(dir, 'data');
  const res = { read: [], write: [] };
  try {
    // Warm-up (thread creation, lookups).
    await dd(['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=64', 'conv=notrunc']);
    await dd([`if=${file}`, 'of=/dev/null', 'bs=1M', 'count=64']);
    for (let i = 0; i < RUNS; i++) {
      res.write.push(await dd(['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${MIB_PER_RUN}`, 'conv=notrunc']));
      if (reads) res.read.push(await dd([`if=${file}`, 'of=/dev/null', 'bs=1M', `count=${MIB_PER_RUN}`]));
    }
  } finally {
    await stopFs(child, dir);
  }
  log(`${name}: write MB/s ${res.write.map((x) => x.toFixed(0)).join(' ')}; read MB/s ${res.read.map((x) => x.toFixed(0)).join(' ')}`);
  return { read: reads ? Math.max(...res.read) : 0, write: Math.max(...res.write) };
}

const base = mkdtempSync(join(tmpdir(), 's3z-bench-fuse-'));
const cDir = join(base, 'c');
const jsDir = join(base, 'js');
mkdirSync(cDir);
mkdirSync(jsDir);
let exitCode = 0;
try {
  const nullfs = buildNullfs();
  log(`${RUNS} run(s) of ${MIB_PER_RUN} MiB each way, bs=1M, ${THREADS} fuse threads`);
  const c = await measure('C reference', nullfs, [cDir, String(THREADS)], cDir);
  const jsfs = join(ROOT, 'scripts/bench-fuse/jsfs.js');
  const js = await measure('JS binding', process.execPath, [jsfs, jsDir, String(THREADS), 'borrowed'], jsDir);
  // For reference (stderr only): writes whose payloads the handler owns (released by the GC).
  const owned = await measure('JS binding, writeBuffers "owned"', process.execPath, [jsfs, jsDir, String(THREADS), 'owned'], jsDir, { reads: false });
  const r = (x) => Math.round(x);
  console.log(JSON.stringify({ jsReadMBps: r(js.read), jsWriteMBps: r(js.write), cReadMBps: r(c.read), cWriteMBps: r(c.write) }));
  log(`JS/C: read ${((100 * js.read) / c.read).toFixed(0)}%, write ${((100 * js.write) / c.write).toFixed(0)}% (owned write buffers: ${((100 * owned.write) / c.write).toFixed(0)}%)`);
} catch (err) {
  console.error(`bench:fuse: ${err instanceof Error ? err.message : String(err)}`);
  exitCode = 1;
} finally {
  for (const d of [cDir, jsDir]) {
    if (isMounted(d)) {
      console.error(`bench:fuse: ${d} is still mounted; detaching`);
      try {
        execFileSync('fusermount3', ['-u', '-z', d], { stdio: 'ignore' });
      } catch {
        exitCode = 1;
      }
    }
  }
  rmSync(base, { recursive: true, force: true });
}
process.exitCode = exitCode;
