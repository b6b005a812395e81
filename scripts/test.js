#!/usr/bin/env node
// npm test's runner (after `npm run build`): every test file against s3rver, then
// every S3-facing test file again against one throwaway Ceph RGW, which enforces
// what s3rver lets pass (SigV4 signatures and payload hashes, conditional writes).
//
//   node scripts/test.js [node --test flags...] [dist-test/<dir>/<file>.test.js ...]
//
//   S3Z_TEST_S3=both (default) | s3rver | rgw     which passes run
//   S3Z_TEST_ENDPOINT + S3Z_TEST_BUCKET + AWS_*   instead: one pass of every file
//                                                 against that endpoint
//   CI=true                                       RGW not installed is a failure
//
// The s3rver pass is `node --test` as before: each file starts its own s3rver
// (test/helpers/s3.ts). The RGW pass starts one cluster (test/helpers/rgw.ts) for
// the whole pass and hands it to the files through S3Z_TEST_ENDPOINT,
// S3Z_TEST_BUCKET, S3Z_TEST_BACKEND=rgw and AWS_*; each test still works under
// its own random prefix. Concurrency is node's default, as it was under
// `node --test dist-test/`: FUSE and zfs-fuse tests isolate themselves.
//
// Invariants: RGW is stopped by pid in a finally and on SIGINT/SIGTERM (the
// helper also kills it at exit); the exit status is non-zero if any pass failed;
// the LAST line printed is `tests: N passed, N failed[, N skipped]` summed over
// the passes, read from a TAP copy of each pass's results.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST_TEST = path.join(ROOT, 'dist-test');
/** Test directories that talk to S3; any other file importing helpers/s3.js counts too. */
const S3_DIRS = ['s3', 'volume', 'cli', 'device', 'zfs'];

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const named = args.filter((a) => !a.startsWith('-')).map((a) => path.resolve(a));
const ci = process.env.CI === 'true' || process.env.CI === '1';

const totals = { passed: 0, failed: 0, skipped: 0 };
const timings = [];
let current; // the running `node --test` child
let rgw; // the running cluster
const work = mkdtempSync(path.join(tmpdir(), 's3z-test-run-'));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    // An interrupted run must not end in a summary that reads like a success.
    totals.failed += 1;
    if (current?.pid !== undefined) {
      try {
        process.kill(current.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    // Give the test processes a moment to clean up their mounts; RGW goes at exit.
    const t = setTimeout(() => finish(sig === 'SIGINT' ? 130 : 143), current ? 10_000 : 0);
    current?.once('exit', () => {
      clearTimeout(t);
      finish(sig === 'SIGINT' ? 130 : 143);
    });
  });
}

try {
  const files = named.length > 0 ? named : listTests(DIST_TEST);
  const external = process.env.S3Z_TEST_ENDPOINT;
  if (external) {
    await pass(`external ${external}`, files, { S3Z_TEST_BACKEND: process.env.S3Z_TEST_BACKEND || 'external' });
  } else {
    const which = process.env.S3Z_TEST_S3 || 'both';
    if (!['both', 's3rver', 'rgw'].includes(which)) throw new Error(`S3Z_TEST_S3 must be both, s3rver or rgw, not "${which}"`);
    if (which !== 'rgw') await pass('s3rver', files, { S3Z_TEST_BACKEND: 's3rver' }, ['S3Z_TEST_ENDPOINT', 'S3Z_TEST_BUCKET']);
    if (which !== 's3rver') await rgwPass(files.filter(s3Facing));
  }
} catch (err) {
  log(`error: ${err instanceof Error ? err.message : String(err)}`);
  totals.failed += 1;
} finally {
  await rgw?.stop();
  rgw = undefined;
}
for (const t of timings) log(`${t.name} pass: ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped in ${t.seconds.toFixed(0)} s`);
finish(totals.failed > 0 ? 1 : 0);

async function rgwPass(files) {
  if (files.length === 0) {
    log('rgw pass: no S3-facing test file selected');
    return;
  }
  const { startRgw, missingRgwTools, TEST_STORAGE_CLASSES } = await import(path.join(DIST_TEST, 'helpers', 'rgw.js'));
  const missing = missingRgwTools();
  if (missing.length > 0) {
    const why = `Ceph RGW is not installed (missing ${missing.join(', ')}; scripts/install-deps.sh installs it)`;
    if (ci) throw new Error(`${why}: with CI=true that is a failure`);
    log(`rgw pass SKIPPED: ${why}`);
    return;
  }
  const t0 = performance.now();
  rgw = await startRgw({ storageClasses: TEST_STORAGE_CLASSES });
  log(`rgw: ${rgw.endpoint} (pids ${rgw.pids.join(' ')}, ${rgw.dir}) started in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await pass('rgw', files, rgw.env);
}

/** One `node --test` run; adds its counts to the totals. */
async function pass(name, files, env, unset = []) {
  log(`${name} pass: ${files.length} test files`);
  const tap = path.join(work, `${name.replace(/\W+/g, '_')}.tap`);
  const childEnv = { ...process.env, ...env };
  for (const k of unset) delete childEnv[k];
  const t0 = performance.now();
  current = spawn(
    process.execPath,
    ['--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...flags, ...files],
    { stdio: 'inherit', env: childEnv },
  );
  const code = await new Promise((resolve) => current.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1))));
  current = undefined;
  const counts = readTap(tap);
  // A runner that died (or a file that crashed outside any test) counts as a failure.
  if (code !== 0 && counts.failed === 0) counts.failed = 1;
  totals.passed += counts.passed;
  totals.failed += counts.failed;
  totals.skipped += counts.skipped;
  timings.push({ name, ...counts, seconds: (performance.now() - t0) / 1000 });
}

function readTap(file) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  if (!existsSync(file)) return counts;
  const text = readFileSync(file, 'utf8');
  // The summary node's TAP reporter ends with: # tests, # pass, # fail, # cancelled, # skipped, # todo.
  const get = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  counts.passed = get('pass');
  counts.failed = get('fail') + get('cancelled');
  counts.skipped = get('skipped') + get('todo');
  return counts;
}

function listTests(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listTests(p));
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

function s3Facing(file) {
  const rel = path.relative(DIST_TEST, file).split(path.sep);
  if (rel.length > 1 && S3_DIRS.includes(rel[0])) return true;
  try {
    return /helpers\/s3\.js['"]/.test(readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
}

function log(line) {
  process.stdout.write(`# ${line}\n`);
}

function finish(code) {
  rmSync(work, { recursive: true, force: true });
  let summary = `tests: ${totals.passed} passed, ${totals.failed} failed`;
  if (totals.skipped > 0) summary += `, ${totals.skipped} skipped`;
  process.stdout.write(`${summary}\n`);
  // The rgw helper's exit handler SIGKILLs the cluster and removes its folder.
  process.exit(code);
}
