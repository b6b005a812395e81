// The S3 side of the benchmark: s3rver through the product's `local-s3` (one
// process: started with --openssl-legacy-provider so it does not re-spawn
// itself), the latency proxy (dist-test/helpers/fault-proxy.js) in front of it,
// an SDK client through the proxy, request counters that tell LIST from GET,
// and the raw GET/PUT ceiling.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startChild, defer, log, waitFor, trackChild, settle } from './proc.js';

export const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * Starts s3rver (data in dataDir) and the proxy. Returns
 * { endpoint (the proxy), direct (s3rver), proxy, client, env, pid, newBucket(), counts(), resetCounts(), stop() }.
 */
export async function startS3Env({ root, dataDir, latencyMs = 0 }) {
  const server = startChild(process.execPath, ['--openssl-legacy-provider', join(root, 'dist/cli.js'), 'local-s3', '--dir', dataDir, '--port', '0', '--bucket', 'bench'], {
    cwd: root,
  });
  const stopServer = defer(`s3rver pid ${server.pid}`, () => server.stop(10_000));
  const m = await waitFor(() => /serving (http:\/\/[0-9.:]+)/.exec(server.output()) ?? (!server.running() ? 'dead' : null), 30_000);
  if (!m || m === 'dead') {
    await stopServer();
    throw new Error(`local-s3 did not start: ${server.output().trim()}`);
  }
  const direct = m[1];
  log(`s3rver pid ${server.pid} at ${direct} (data in ${dataDir})`);

  const proxy = await startProxyChild(root, direct, latencyMs);
  const stopProxy = defer(`latency proxy pid ${proxy.pid}`, () => proxy.stop());

  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const client = new S3Client({
    endpoint: proxy.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({ httpAgent: agent, connectionTimeout: 10_000, requestTimeout: 120_000 }),
    maxAttempts: 3,
  });

  const env = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: proxy.endpoint,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_REGION: 'us-east-1',
  };
  delete env.AWS_PROFILE;
  delete env.AWS_SESSION_TOKEN;
  delete env.AWS_ENDPOINT_URL;

  let seq = 0;
  const run = randomBytes(3).toString('hex');
  return {
    endpoint: proxy.endpoint,
    direct,
    proxy,
    client,
    env,
    pid: server.pid,
    /** A fresh bucket, created through the proxy. */
    async newBucket(tag) {
      const name = `${tag}-${run}-${seq++}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63);
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    /** Request counts seen by the proxy since the last reset: { get, put, delete, post, list, head }. */
    counts: () => proxy.call({ op: 'counts' }),
    resetCounts: () => proxy.call({ op: 'reset' }),
    setLatency: (ms) => proxy.call({ op: 'setLatency', ms }),
    async stop() {
      client.destroy();
      agent.destroy();
      await stopProxy();
      await stopServer();
    },
  };
}

/** Runs fn over items with at most `concurrency` at once. */
async function pool(items, concurrency, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Raw throughput of 1 MiB objects from a plain SDK client through the proxy:
 * PUT `count` objects, then GET them, at each concurrency. Returns the best
 * MB/s (10^6 bytes) of each, with the per-concurrency figures.
 */
export async function rawCeiling(s3, { count, concurrencies = [16, 32] }) {
  const MiB = 1 << 20;
  const bodies = Array.from({ length: 8 }, () => randomBytes(MiB));
  const res = { putMBps: 0, getMBps: 0, runs: [] };
  for (const c of concurrencies) {
    const bucket = await s3.newBucket(`raw-c${c}`);
    const keys = Array.from({ length: count }, (_, i) => `obj/${String(i).padStart(6, '0')}`);
    // warm the connection pool
    await pool(keys.slice(0, c), c, (k, i) => s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: `warm/${k}`, Body: bodies[i % 8] })));
    settle(`raw PUT at ${c}`);
    let t = performance.now();
    await pool(keys, c, (k, i) => s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: bodies[i % 8] })));
    const put = (count * MiB) / 1e6 / ((performance.now() - t) / 1000);
    settle(`raw GET at ${c}`);
    t = performance.now();
    let bytes = 0;
    await pool(keys, c, async (k) => {
      const r = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: k }));
      for await (const chunk of r.Body) bytes += chunk.length;
    });
    const get = bytes / 1e6 / ((performance.now() - t) / 1000);
    if (bytes !== count * MiB) throw new Error(`raw GET read ${bytes} bytes, expected ${count * MiB}`);
    res.runs.push({ concurrency: c, putMBps: put, getMBps: get });
    res.putMBps = Math.max(res.putMBps, put);
    res.getMBps = Math.max(res.getMBps, get);
    log(`raw S3, ${count} x 1 MiB, concurrency ${c}: PUT ${put.toFixed(0)} MB/s, GET ${get.toFixed(0)} MB/s`);
  }
  return res;
}

/** The proxy in its own process (proxy-child.js); call() sends one op and awaits its answer. */
async function startProxyChild(root, target, latencyMs) {
  const child = fork(fileURLToPath(new URL('./proxy-child.js', import.meta.url)), [root, target, String(latencyMs)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  trackChild(child);
  const pending = new Map();
  let seq = 0;
  let exited = false;
  const gone = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = true;
    for (const p of pending.values()) p.reject(new Error(`latency proxy exited (${code ?? signal})`));
    pending.clear();
    resolve();
  }));
  const endpoint = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('latency proxy did not start in 20 s')), 20_000);
    child.once('message', (m) => {
      clearTimeout(t);
      if (m?.ready) resolve(m.endpoint);
      else reject(new Error(`latency proxy: unexpected first message ${JSON.stringify(m)}`));
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`latency proxy exited with ${code} before it was ready`));
    });
  });
  child.on('message', (m) => {
    const p = pending.get(m?.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(`latency proxy: ${m.error}`));
  });
  const call = (msg) => {
    if (exited) return Promise.reject(new Error('latency proxy is not running'));
    const id = ++seq;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.send({ ...msg, id });
    });
  };
  log(`latency proxy pid ${child.pid} at ${endpoint} -> ${target}`);
  return {
    endpoint,
    pid: child.pid,
    call,
    async stop() {
      if (exited) return;
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await call({ op: 'stop' }).catch(() => child.kill('SIGKILL'));
      await gone;
      clearTimeout(t);
    },
  };
}
