// put and get of a raw image (the benchmark's random source file) against the
// raw PUT/GET ceiling of the same run, and a second put of the same image, whose
// block PUTs must be 0 (the lease's own PUTs are counted apart).
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { log, runOk, settle } from './proc.js';

export async function imageBench(s3, { root, src, bytes, work, cpuProfDir }) {
  // --cpu-prof profiles put and get too: their main thread is what the image rows measure.
  const nodeArgs = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
  const cli = (args) => runOk(process.execPath, [...nodeArgs, join(root, 'dist/cli.js'), ...args], { env: s3.env, timeoutMs: 1_800_000 });
  const bucket = await s3.newBucket('image');
  const url = `s3://${bucket}/vol`;
  await cli(['create', url, '--size', String(bytes)]);
  await s3.resetCounts();
  settle('put');
  const put = await cli(['put', '--quiet', src, url]);
  const putCounts = await s3.counts();
  await s3.resetCounts();
  settle('the second put');
  const again = await cli(['put', '--quiet', src, url]);
  const againCounts = await s3.counts();
  const out = join(work, `image-get-${process.pid}.img`);
  rmSync(out, { force: true });
  settle('get');
  const get = await cli(['get', '--quiet', url, out]);
  rmSync(out, { force: true });
  const MB = (ms) => bytes / 1e6 / (ms / 1000);
  const res = {
    putMBps: MB(put.ms), getMBps: MB(get.ms), againMs: again.ms,
    putBlockPuts: putCounts.put - putCounts.leasePut, againBlockPuts: againCounts.put - againCounts.leasePut, againCounts,
  };
  log(`image: put ${res.putMBps.toFixed(0)} MB/s (${res.putBlockPuts} block PUTs), get ${res.getMBps.toFixed(0)} MB/s, second put ${(again.ms / 1000).toFixed(1)} s with ${res.againBlockPuts} block PUTs`);
  return res;
}
