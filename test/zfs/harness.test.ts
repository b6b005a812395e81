// Proves the ZFS harness end to end on a plain sparse file (no s3zmount):
// zfs-fuse in its own mount namespace writes a pool, OpenZFS's zdb checks it
// read-only and copies files out of its snapshots.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'node:test';
import { promisify } from 'node:util';
import {
  cleanupStack,
  expectSha256,
  findTool,
  requireZfs,
  seededBytes,
  seededSha256,
  sha256File,
  sha256Hex,
  sparseFile,
  startZfsFuse,
  tmpDir,
  zdbCheck,
  zdbCopyFile,
} from '../helpers/zfs.js';

const execFileP = promisify(execFile);
const MiB = 1 << 20;
const GiB = 1 << 30;

/** Offsets of `needle` in a (sparse) file, read in 16 MiB chunks. */
async function findInFile(file: string, needle: Buffer): Promise<number[]> {
  const fh = await open(file, 'r');
  const found: number[] = [];
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(16 * MiB + needle.length);
    for (let pos = 0; pos < size; pos += 16 * MiB) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      let i = -1;
      while ((i = buf.subarray(0, bytesRead).indexOf(needle, i + 1)) !== -1) {
        if (i < 16 * MiB) found.push(pos + i);
      }
    }
  } finally {
    await fh.close();
  }
  return found;
}

test('zfs-fuse pool on a sparse file: snapshots, export, zdb -bcc and zdb -r', { timeout: 300_000 }, async (t) => {
  if (!requireZfs(t)) return;
  const defer = cleanupStack(t);
  const dir = await tmpDir(defer);
  const vdevDir = path.join(dir, 'vdev');
  const mnt = path.join(dir, 'mnt');
  await mkdir(vdevDir);
  await mkdir(mnt);
  const disk = path.join(vdevDir, 'disk.img');
  await sparseFile(disk, GiB);

  const z = await startZfsFuse();
  defer(() => z.stop());

  const pool = `h${randomBytes(3).toString('hex')}`;
  await z.zpool('create', '-m', path.join(mnt, pool), pool, disk);
  // zfs-fuse's `zpool get` has no -H/-o: NAME PROPERTY VALUE SOURCE
  assert.match(await z.zpool('get', 'version', pool), new RegExp(`^${pool}\\s+version\\s+23\\s`, 'm'));
  await z.zfs('create', `${pool}/fs`);
  const fs = path.join(mnt, pool, 'fs');
  await z.run('mkdir', ['-p', path.join(fs, 'sub/deeper')]);

  // ~20 MiB in files of various sizes (not all record-aligned)
  const v1: Record<string, { seed: string; size: number }> = {
    'a.bin': { seed: 'a', size: 8 * MiB },
    'b.bin': { seed: 'b', size: 6 * MiB + 4097 },
    'sub/c.bin': { seed: 'c', size: 5 * MiB },
    'sub/deeper/d.bin': { seed: 'd', size: 1 * MiB - 1 },
    'small.txt': { seed: 'small', size: 100 },
  };
  const expected1: Record<string, string> = {};
  for (const [name, { seed, size }] of Object.entries(v1)) {
    const sum = await z.writeSeededFile(path.join(fs, name), size, seed);
    assert.equal(sum, seededSha256(seed, size));
    expected1[name] = sum;
  }
  for (const [name, sum] of Object.entries(expected1)) assert.equal(await z.sha256(path.join(fs, name)), sum, name);
  await z.zfs('snapshot', `${pool}/fs@s1`);

  // modify: replace b.bin, overwrite the middle of a.bin in place, add a file
  const expected2: Record<string, string> = { ...expected1 };
  expected2['b.bin'] = await z.writeSeededFile(path.join(fs, 'b.bin'), 3 * MiB, 'b-v2');
  const patch = seededBytes('a-patch', 1 * MiB);
  await z.run('dd', [`of=${path.join(fs, 'a.bin')}`, 'bs=1M', 'seek=3', 'conv=notrunc', 'status=none'], { input: patch });
  const a2 = seededBytes('a', 8 * MiB);
  patch.copy(a2, 3 * MiB);
  expected2['a.bin'] = sha256Hex(a2);
  expected2['new.bin'] = await z.writeSeededFile(path.join(fs, 'new.bin'), 2 * MiB, 'new');
  for (const [name, sum] of Object.entries(expected2)) assert.equal(await z.sha256(path.join(fs, name)), sum, name);
  await z.zfs('snapshot', `${pool}/fs@s2`);

  const snaps = (await z.zfs('list', '-H', '-t', 'snapshot', '-o', 'name')).trim().split('\n');
  assert.deepEqual(snaps.sort(), [`${pool}/fs@s1`, `${pool}/fs@s2`]);

  await z.zpool('export', pool);
  assert.deepEqual(await z.pools(), []);
  await z.stop();
  await z.stop(); // safe twice
  assert.equal(z.running, false);

  // zdb: every block's checksum, no leaks
  const check = await zdbCheck(pool, vdevDir);
  assert.ok(check.ok, `zdb -bcc reported problems:\n${check.problems.join('\n')}\n${check.output}`);
  assert.ok((check.blocks ?? 0) > 100, `few blocks traversed: ${check.blocks}`);

  // zdb -r: each file out of each snapshot
  const out = path.join(dir, 'out');
  await mkdir(out);
  const copies: { snap: string; name: string; dest: string; sum: string }[] = [];
  for (const [snap, expected] of [['s1', expected1], ['s2', expected2]] as const) {
    for (const [name, sum] of Object.entries(expected)) copies.push({ snap, name, sum, dest: path.join(out, `${snap}-${name.replaceAll('/', '_')}`) });
  }
  // each zdb run imports the pool (~1 s): a few at once
  const queue = [...copies];
  await Promise.all(
    [1, 2, 3].map(async () => {
      for (let c = queue.shift(); c !== undefined; c = queue.shift()) await zdbCopyFile(`${pool}/fs@${c.snap}`, `/${c.name}`, c.dest, vdevDir);
    }),
  );
  await expectSha256(Object.fromEntries(copies.map((c) => [c.dest, c.sum])));
  // a file that is not in s1
  await assert.rejects(zdbCopyFile(`${pool}/fs@s1`, 'new.bin', path.join(out, 'nope'), vdevDir), /No such file/);

  // A real error must fail: corrupt one byte of sub/c.bin's first record in a
  // copy of the disk; zdb -bcc must report it and zdb -r must refuse the file.
  const badDir = path.join(dir, 'bad');
  await mkdir(badDir);
  const bad = path.join(badDir, 'disk.img');
  await execFileP(findTool('cp') ?? 'cp', ['--sparse=always', disk, bad]);
  const at = await findInFile(bad, seededBytes('c', 64));
  assert.equal(at.length, 1, `c.bin's first bytes found at ${JSON.stringify(at)}`);
  const off = (at[0] ?? 0) + 4096;
  const fh = await open(bad, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, off);
    b[0] = (b[0] ?? 0) ^ 0xff;
    await fh.write(b, 0, 1, off);
  } finally {
    await fh.close();
  }
  const badCheck = await zdbCheck(pool, badDir);
  assert.equal(badCheck.ok, false, `zdb -bcc missed a corrupt block:\n${badCheck.output}`);
  assert.ok(badCheck.problems.some((p) => /Got error 52/.test(p)), badCheck.problems.join('\n'));
  await assert.rejects(zdbCopyFile(`${pool}/fs@s1`, 'sub/c.bin', path.join(out, 'bad-c'), badDir), /exit 52/);
  // the other files are still fine
  await zdbCopyFile(`${pool}/fs@s1`, 'sub/deeper/d.bin', path.join(out, 'bad-d'), badDir);
  assert.equal(await sha256File(path.join(out, 'bad-d')), expected1['sub/deeper/d.bin']);
});

test('two zfs-fuse daemons at once, and host mounts under sharedDirs seen inside', { timeout: 120_000 }, async (t) => {
  if (!requireZfs(t, { zdb: false })) return;
  const defer = cleanupStack(t);
  const dir = await tmpDir(defer);
  const shared = path.join(dir, 'shared');
  await mkdir(shared);

  const [z1, z2] = await Promise.all([startZfsFuse({ sharedDirs: [shared] }), startZfsFuse()]);
  defer(() => z1.stop());
  defer(() => z2.stop());
  assert.notEqual(z1.pid, z2.pid);

  // same pool name in both: each daemon sees only its own
  for (const [i, z] of [z1, z2].entries()) {
    const disk = path.join(dir, `d${i}.img`);
    await sparseFile(disk, 256 * MiB);
    await z.zpool('create', '-m', path.join(dir, `m${i}`), 'same', disk);
    await z.writeFile(path.join(dir, `m${i}`, 'who'), `daemon ${i}\n`);
  }
  assert.equal((await z1.readFile(path.join(dir, 'm0', 'who'))).toString(), 'daemon 0\n');
  assert.equal((await z2.readFile(path.join(dir, 'm1', 'who'))).toString(), 'daemon 1\n');
  assert.deepEqual(await z1.pools(), ['same']);
  assert.equal((await z1.zpool('list', '-H', '-o', 'name,health')).trim(), 'same\tONLINE');
  // the datasets are mounted only inside each namespace
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(path.join(dir, 'm0')));

  // a mount the host makes later under a shared dir is visible inside z1
  const sub = path.join(shared, 'later');
  await mkdir(sub);
  await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=1m', 's3z-test', sub]);
  try {
    await writeFile(path.join(sub, 'hello'), 'from the host\n');
    assert.equal((await z1.readFile(path.join(sub, 'hello'))).toString(), 'from the host\n');
  } finally {
    await execFileP('umount', [sub]);
  }

  await Promise.all([z1.stop(), z2.stop()]);
  // stop() exported the pools: the disks are clean for another daemon
  assert.equal(z1.running || z2.running, false);
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(shared), 'shared bind mount undone');
});
