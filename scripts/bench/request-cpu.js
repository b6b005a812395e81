#!/usr/bin/env node
// CPU per 1 MiB block PUT and GET through S3Bucket (the path the daemon, put and
// get use), against s3rver in a process of its own. Throughput on the shared
// 2-core machine moves by 2x with other load; the client's own CPU per request
// moves far less, so this is the figure to compare two builds with.
//
//   node scripts/bench/request-cpu.js [--rounds 3] [--count 256] [--concurrency 16] [DIST...]
//
// DIST: a build's dist folder (default: this checkout's dist). With several, the
// rounds alternate between them (A B A B ...), so they share the same load.
// Prints one line per run: MB/s and CPU µs per request (user+system of the
// client process, which does nothing else).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: opt, positionals } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    count: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '16' },
    child: { type: 'string' },
  },
  allowPositionals: true,
});
const count = Number(opt.count);
const concurrency = Number(opt.concurrency);

if (opt.child) {
  // One measurement: argv DIST, --child ENDPOINT.
  const dist = resolve(positionals[0]);
  const { S3Bucket, DEFAULT_S3_CONFIG } = await import(pathToFileURL(join(dist, 's3/bucket.js')).href);
  const { silentLogger } = await import(pathToFileURL(join(dist, 'log.js')).href);
  const bucket = new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: opt.child }, 'bench', silentLogger);
  const blocks = Array.from({ length: 8 }, () => randomBytes(1 << 20)).map((d) => ({ d, h: createHash('sha256').update(d).digest('hex') }));
  const prefix = `cpu-${process.pid}`;
  const run = async (fn) => {
    let next = 0;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) await fn(next++);
    }));
    const c = process.cpuUsage(c0);
    return { MBps: (count * 1.048576) / ((performance.now() - t0) / 1000), cpuUs: (c.user + c.system) / count };
  };
  await bucket.get('warm-up'); // a connection and the credentials, outside the timing
  const put = await run((i) => bucket.put(`${prefix}/${i}`, blocks[i % 8].d, { sha256Hex: blocks[i % 8].h }));
  const get = await run(async (i) => {
    if ((await bucket.get(`${prefix}/${i}`))?.body.length !== 1 << 20) throw new Error(`GET ${i}: wrong length`);
  });
  bucket.destroy();
  console.log(JSON.stringify({ put, get }));
  process.exit(0);
}

const dists = positionals.length > 0 ? positionals.map((p) => resolve(p)) : [join(ROOT, 'dist')];
const dir = mkdtempSync(join(tmpdir(), 's3z-reqcpu-'));
const server = spawn(process.execPath, ['--openssl-legacy-provider', join(ROOT, 'dist/cli.js'), 'local-s3', '--dir', dir, '--port', '0', '--bucket', 'bench'], { stdio: ['ignore', 'pipe', 'inherit'] });
const stop = () => {
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
};
process.on('SIGINT', () => (stop(), process.exit(130)));
try {
  const endpoint = await new Promise((ok, fail) => {
    let text = '';
    server.stdout.on('data', (c) => {
      text += c;
      const m = /serving (http:\/\/\S+)/.exec(text);
      if (m) ok(m[1]);
    });
    server.on('exit', (code) => fail(new Error(`local-s3 exited (${code})`)));
  });
  const env = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
  for (let round = 1; round <= Number(opt.rounds); round++) {
    for (const dist of dists) {
      const out = await new Promise((ok, fail) => {
        const c = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', endpoint, '--count', String(count), '--concurrency', String(concurrency), dist], { env, stdio: ['ignore', 'pipe', 'inherit'] });
        let text = '';
        c.stdout.on('data', (d) => (text += d));
        c.on('exit', (code) => (code === 0 ? ok(JSON.parse(text)) : fail(new Error(`child for ${dist} exited ${code}`))));
      });
      const f = (r) => `${r.MBps.toFixed(0).padStart(4)} MB/s ${(r.cpuUs / 1000).toFixed(2).padStart(5)} ms CPU`;
      console.log(`round ${round}  ${dist}: PUT ${f(out.put)} | GET ${f(out.get)}`);
    }
  }
} finally {
  stop();
}
