#!/usr/bin/env node
// The bench's zdb rows, several times, with the tools in turns: one zfs-fuse pool per tool
// (8 files of 64 MiB, a snapshot, exported), then ROUNDS times, for each tool, a fresh
// read-only mount with an empty cache, `zdb -e -d` (the cold "import") and `zdb -e -r` of
// one file out of the snapshot, through the bench's latency proxy. `npm run bench` runs
// these rows once per latency; one run is within the spread of the next, and this one
// pairs them. For A/B runs of a build, give its dist folder (it must sit in a checkout
// with node_modules, dist-test and .cache/zdb, e.g. `cp -r dist dist-old`).
//   node scripts/bench/zdb-pair.js [--dist DIR] [--latency MS] [--rounds N]   (dist, 20, 3)
// Needs root, /dev/fuse, zfs-fuse, OpenZFS zdb (scripts/install-zdb.sh), s3backer and
// `npm run build`; leaves nothing behind.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startS3Env } from './s3env.js';
import { s3backerTool, s3zmountTool } from './tools.js';
import { zdbWorkload, zfsPoolWorkload } from './workloads.js';
import { dropCaches, installSignalHandlers, log, runCleanups, runOk } from './proc.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values: opt } = parseArgs({
  options: { dist: { type: 'string', default: 'dist' }, latency: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' } },
});
const MiB = 1024 ** 2;

async function main() {
  installSignalHandlers();
  const work = mkdtempSync(join(tmpdir(), 's3z-zdb-pair-'));
  const src = join(work, 'src');
  await runOk('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=1024', 'iflag=fullblock']);
  const s3 = await startS3Env({ root: ROOT, dataDir: join(work, 's3rver') });
  try {
    await s3.setLatency(Number(opt.latency));
    // tools.js runs `${root}/dist/cli.js`: a root whose dist is the one asked for.
    const distRoot = join(work, 'root');
    mkdirSync(distRoot);
    await runOk('ln', ['-s', resolve(opt.dist), join(distRoot, 'dist')]);
    const tools = [s3zmountTool({ root: distRoot, s3, work: join(work, 'z') }), s3backerTool({ s3 })];
    const vols = new Map();
    for (const tool of tools) {
      const vol = await tool.newVolume('zdb', '1G');
      const shared = join(work, tool.name);
      mkdirSync(shared, { recursive: true });
      const z = await zfsPoolWorkload({
        root: ROOT,
        sharedDir: shared,
        mountFn: () => tool.mount(vol, join(shared, 'mnt')),
        src,
        srcBytes: 1024 * MiB,
        fileCount: 8,
        fileBytes: 64 * MiB,
      });
      await z.m.unmount();
      await z.stopZfs();
      vols.set(tool.name, vol);
    }
    log(`${relative(ROOT, resolve(opt.dist)) || opt.dist}, ${opt.latency} ms per request`);
    for (let r = 1; r <= Number(opt.rounds); r++) {
      for (const tool of tools) {
        const dir = join(work, `ro-${tool.name}-${r}`);
        const m = await tool.mount(vols.get(tool.name), dir, { readOnly: true });
        try {
          dropCaches();
          const dest = join(work, 'f0.out');
          const z = await zdbWorkload({ root: ROOT, dir, file: 'f0', dest, counts: s3.counts, resetCounts: s3.resetCounts });
          rmSync(dest, { force: true });
          log(`${tool.name.padEnd(8)} round ${r}: zdb -d ${z.importMs.toFixed(0)} ms (${z.importCounts.get} GETs), zdb -r ${z.readMs.toFixed(0)} ms (${z.readCounts.get} GETs)`);
        } finally {
          await m.unmount();
        }
      }
    }
  } finally {
    await s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

let code = 1;
try {
  await main();
  code = 0;
} catch (e) {
  console.error(`zdb-pair: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
} finally {
  for (const e of await runCleanups()) console.error(`zdb-pair: cleanup: ${e}`);
}
process.exit(code);
