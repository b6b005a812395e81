// Direct reads (src/fuse/direct-reads.ts, native/s3zdirect.c) on a real mount over
// MemFs: a read within one granted block is answered by libfuse's thread from the
// block's file (bytes that differ from what the read handler would answer), and
// every other read still reaches the handler: not granted, revoked, spanning two
// blocks, past the end of its file, and after disable(). Both ways of answering:
// from a mapping of the file (the default) and by pread (mapLimit 0); the mapped
// pages the process holds stay bounded by mapLimit.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { defer, fuseAvailable, mountMemFs } from './helpers.js';
import { until } from '../helpers/until.js';

const BS = 64 * 1024;
const BLOCKS = 8;
const FILE_BYTES = 4 * BS; // blocks 0-3 in file 0, 4-7 in file 1

// 'mapped' maps every read, however small; 'pread' none.
for (const [mode, mapLimit] of [['mapped', undefined], ['pread', 0]] as const) {
test(`direct reads (${mode}): granted blocks come from their file without the handler; every other read reaches it`, async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, file, fs, base } = await mountMemFs(t, {}, { size: BLOCKS * BS });
  const handlerBytes = randomBytes(BLOCKS * BS);
  fs.content.set(handlerBytes);
  const fileBytes = randomBytes(BLOCKS * BS);
  // File 0 ends half-way through block 3: a read there is short, so it goes to the handler.
  const fds = [0, 1].map((n) => {
    const fd = openSync(join(base, `slab-${n}`), 'w+');
    defer(t, () => closeSync(fd));
    const part = fileBytes.subarray(n * FILE_BYTES, (n + 1) * FILE_BYTES);
    writeSync(fd, n === 0 ? part.subarray(0, 3 * BS + BS / 2) : part, 0, undefined, 0);
    return fd;
  });
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: BLOCKS, fileBytes: FILE_BYTES, ...(mapLimit === undefined ? { mapMinRead: 0 } : { mapLimit }) });
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: BLOCKS, fileBytes: FILE_BYTES }), /only once/);
  fds.forEach((fd, n) => table.file(n, fd));
  for (const i of [1, 3, 5]) table.grant(i);
  assert.throws(() => table.grant(BLOCKS), RangeError);

  const dev = await open(file, 'r');
  defer(t, () => dev.close());
  const readAt = async (pos: number, length: number): Promise<Buffer> => {
    const out = Buffer.alloc(length);
    const { bytesRead } = await dev.read(out, 0, length, pos);
    assert.equal(bytesRead, length);
    return out;
  };
  const fromHandler = (pos: number, length: number): Buffer => handlerBytes.subarray(pos, pos + length);
  const fromFile = (pos: number, length: number): Buffer => fileBytes.subarray(pos, pos + length);
  const handled = (): number => fs.readSizes.length;

  let before = handled();
  assert.deepEqual(await readAt(BS + 100, 4096), fromFile(BS + 100, 4096), 'granted, in file 0');
  assert.deepEqual(await readAt(5 * BS, BS), fromFile(5 * BS, BS), 'granted, a whole block of file 1');
  assert.equal(handled(), before, 'neither reached the handler');
  assert.deepEqual(table.counts, { reads: 2, bytes: 4096 + BS, drops: 0 });
  assert.deepEqual(Array.from(table.touched()).sort(), [1, 5]);
  assert.deepEqual(Array.from(table.touched()), [], 'each block once per drain');

  before = handled();
  assert.deepEqual(await readAt(2 * BS, 4096), fromHandler(2 * BS, 4096), 'not granted');
  assert.deepEqual(await readAt(2 * BS - 2048, 4096), fromHandler(2 * BS - 2048, 4096), 'spans blocks 1 and 2');
  assert.deepEqual(await readAt(3 * BS + BS / 2 - 1024, 4096), fromHandler(3 * BS + BS / 2 - 1024, 4096), 'past the end of file 0');
  assert.equal(handled(), before + 3);

  table.revoke(1);
  assert.deepEqual(await readAt(BS + 100, 4096), fromHandler(BS + 100, 4096), 'revoked');
  // While revoked, the block's bytes change in its file (as a write does).
  randomBytes(BS).copy(fileBytes, BS);
  writeSync(fds[0]!, fileBytes, BS, BS, BS);
  table.grant(1);
  assert.deepEqual(await readAt(BS + 100, 4096), fromFile(BS + 100, 4096), 'granted again: the new bytes');

  table.disable();
  table.grant(1); // no effect any more
  before = handled();
  assert.deepEqual(await readAt(BS + 100, 4096), fromHandler(BS + 100, 4096), 'after disable');
  assert.deepEqual(await readAt(5 * BS, 4096), fromHandler(5 * BS, 4096));
  assert.equal(handled(), before + 2);
  assert.equal(table.counts.reads, 3);
});
}

/** Resident bytes of this process's mappings of `file` (from /proc/self/smaps). */
function residentOf(file: string): number {
  let rss = 0;
  let inFile = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(` ${file}`);
    else if (inFile && line.startsWith('Rss:')) rss += Number(/(\d+) kB/.exec(line)?.[1] ?? 0) * 1024;
  }
  return rss;
}

test('direct reads from a mapping: the pages it makes resident are let go of after mapLimit bytes', async (t) => {
  if (!fuseAvailable(t)) return;
  const blocks = 64;
  const { session, file, base } = await mountMemFs(t, {}, { size: blocks * BS });
  const slab = join(base, 'slab-big');
  const bytes = randomBytes(blocks * BS);
  const fd = openSync(slab, 'w+');
  defer(t, () => closeSync(fd));
  writeSync(fd, bytes, 0, undefined, 0);
  const limit = 4 * BS;
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: blocks, fileBytes: blocks * BS, mapLimit: limit, mapMinRead: BS });
  table.file(0, fd);
  for (let i = 0; i < blocks; i++) table.grant(i);
  const dev = await open(file, 'r');
  defer(t, () => dev.close());
  const readAll = async (): Promise<void> => {
    for (let i = 0; i < blocks; i++) {
      const out = Buffer.alloc(BS);
      await dev.read(out, 0, BS, i * BS);
      assert.ok(out.equals(bytes.subarray(i * BS, (i + 1) * BS)), `block ${i}`);
    }
  };
  await readAll();
  assert.equal(table.counts.reads, blocks);
  // The thread that crosses the limit lets go after its reply: the last one may still be at it.
  await until('the 16th let-go', () => table.counts.drops === blocks / 4);
  const resident = residentOf(slab);
  assert.ok(resident <= limit, `${resident} bytes of the file resident in this process, limit ${limit}`);
  table.disable();
  assert.equal(residentOf(slab), 0, 'unmapped at disable');
});

test('direct reads from a mapping: reads under mapMinRead go by pread; without the limit, what larger reads touched is resident (the measure works)', async (t) => {
  if (!fuseAvailable(t)) return;
  const blocks = 16;
  const { session, file, base } = await mountMemFs(t, {}, { size: blocks * BS });
  const slab = join(base, 'slab-big');
  const fd = openSync(slab, 'w+');
  defer(t, () => closeSync(fd));
  writeSync(fd, randomBytes(blocks * BS), 0, undefined, 0);
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: blocks, fileBytes: blocks * BS, mapLimit: 2 ** 40, mapMinRead: BS });
  table.file(0, fd);
  for (let i = 0; i < blocks; i++) table.grant(i);
  const dev = await open(file, 'r');
  defer(t, () => dev.close());
  for (let i = 0; i < blocks; i++) await dev.read(Buffer.alloc(4096), 0, 4096, i * BS);
  assert.equal(table.counts.reads, blocks);
  assert.equal(residentOf(slab), 0, '4 KiB reads (under mapMinRead) did not go through the mapping');
  for (let i = 0; i < blocks; i++) await dev.read(Buffer.alloc(BS), 0, BS, i * BS);
  assert.equal(table.counts.drops, 0);
  assert.ok(residentOf(slab) >= (blocks / 2) * BS, `${residentOf(slab)} bytes resident`);
  table.disable();
});

test('direct reads: the layout is checked before the native call', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session } = await mountMemFs(t, {}, { size: BS });
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 0, fileBytes: BS }), /blockCount/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 1, fileBytes: BS + 1 }), /multiple/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: 1.5, blockCount: 1, fileBytes: BS }), /blockSize/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 1, fileBytes: BS, mapLimit: -1 }), /mapLimit/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 1, fileBytes: BS, mapMinRead: 0.5 }), /mapMinRead/);
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: 1, fileBytes: BS });
  assert.throws(() => table.file(-1, 3), TypeError);
  assert.throws(() => table.revoke(1), RangeError);
});

test('direct reads: the table stops granting at its memory bound; those blocks stay with the handler', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session } = await mountMemFs(t, {}, { size: BS });
  const table = session.directReads({ ino: 2, blockSize: 4096, blockCount: 2 ** 32, fileBytes: 2 ** 40 });
  // One block in each of 4096 chunks of 4096 blocks: 64 MiB of table.
  for (let c = 0; c < 4096; c++) assert.equal(table.grant(c * 4096), true, `chunk ${c}`);
  assert.equal(table.grant(4096 * 4096), false, 'a 4097th chunk is refused');
  table.revoke(4096 * 4096);
  assert.equal(table.grant(1), true, 'an allocated chunk still takes grants');
  table.disable();
});

test('direct reads from a mapping: a file number given another file (even under the same fd number) reads the new file', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, file, base } = await mountMemFs(t, {}, { size: 2 * BS });
  const write = (name: string, bytes: Buffer): number => {
    const fd = openSync(join(base, name), 'w+');
    writeSync(fd, bytes, 0, undefined, 0);
    return fd;
  };
  const [a, b, c] = [randomBytes(2 * BS), randomBytes(2 * BS), randomBytes(2 * BS)];
  const fdA = write('slab-a', a);
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: 2, fileBytes: 2 * BS });
  table.file(0, fdA);
  table.grant(0);
  const dev = await open(file, 'r');
  defer(t, () => dev.close());
  const block0 = async (): Promise<Buffer> => {
    const out = Buffer.alloc(BS);
    await dev.read(out, 0, BS, 0);
    return out;
  };
  assert.ok((await block0()).equals(a.subarray(0, BS)), 'file a, mapped');
  const fdB = write('slab-b', b);
  defer(t, () => closeSync(fdB));
  table.revoke(0);
  table.file(0, fdB);
  table.grant(0);
  assert.ok((await block0()).equals(b.subarray(0, BS)), 'file b under another fd');
  // a's fd number is reused for a third file, and registered again.
  table.revoke(0);
  closeSync(fdA);
  const fdC = write('slab-c', c);
  defer(t, () => closeSync(fdC));
  table.file(0, fdC);
  table.grant(0);
  assert.ok((await block0()).equals(c.subarray(0, BS)), `file c (fd ${fdC}; a had ${fdA})`);
  assert.equal(table.counts.reads, 3, 'all three answered directly');
  table.disable();
});
