// Direct reads (src/fuse/direct-reads.ts, native/s3zdirect.c) on a real mount over
// MemFs: a read within one granted block is answered by libfuse's thread from the
// block's file (bytes that differ from what the read handler would answer), and
// every other read still reaches the handler: not granted, revoked, spanning two
// blocks, past the end of its file, and after disable().
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { defer, fuseAvailable, mountMemFs } from './helpers.js';

const BS = 64 * 1024;
const BLOCKS = 8;
const FILE_BYTES = 4 * BS; // blocks 0-3 in file 0, 4-7 in file 1

test('direct reads: granted blocks come from their file without the handler; every other read reaches it', async (t) => {
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
  const table = session.directReads({ ino: 2, blockSize: BS, blockCount: BLOCKS, fileBytes: FILE_BYTES });
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
  assert.deepEqual(table.counts, { reads: 2, bytes: 4096 + BS });
  assert.deepEqual(Array.from(table.touched()).sort(), [1, 5]);
  assert.deepEqual(Array.from(table.touched()), [], 'each block once per drain');

  before = handled();
  assert.deepEqual(await readAt(2 * BS, 4096), fromHandler(2 * BS, 4096), 'not granted');
  assert.deepEqual(await readAt(2 * BS - 2048, 4096), fromHandler(2 * BS - 2048, 4096), 'spans blocks 1 and 2');
  assert.deepEqual(await readAt(3 * BS + BS / 2 - 1024, 4096), fromHandler(3 * BS + BS / 2 - 1024, 4096), 'past the end of file 0');
  assert.equal(handled(), before + 3);

  table.revoke(1);
  assert.deepEqual(await readAt(BS + 100, 4096), fromHandler(BS + 100, 4096), 'revoked');
  table.grant(1);
  assert.deepEqual(await readAt(BS + 100, 4096), fromFile(BS + 100, 4096), 'granted again');

  table.disable();
  table.grant(1); // no effect any more
  before = handled();
  assert.deepEqual(await readAt(BS + 100, 4096), fromHandler(BS + 100, 4096), 'after disable');
  assert.deepEqual(await readAt(5 * BS, 4096), fromHandler(5 * BS, 4096));
  assert.equal(handled(), before + 2);
  assert.equal(table.counts.reads, 3);
});

test('direct reads: the layout is checked before the native call', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session } = await mountMemFs(t, {}, { size: BS });
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 0, fileBytes: BS }), /blockCount/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: BS, blockCount: 1, fileBytes: BS + 1 }), /multiple/);
  assert.throws(() => session.directReads({ ino: 2, blockSize: 1.5, blockCount: 1, fileBytes: BS }), /blockSize/);
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
