// Direct I/O (src/util/direct-io.ts over native/s3zfile.c) and the aligned block buffers
// that `get` writes from: O_DIRECT is really set on the fd (seen in /proc/self/fdinfo),
// refused files are told apart, and every aligned buffer starts on the boundary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DIRECT_IO_ALIGN, alignmentGap, directOrBuffered, setDirectIO } from '../../dist/util/direct-io.js';
import { fileNative } from '../../dist/util/file-native.js';
import { BlockBuffers } from '../../dist/store/block-buffers.js';

const O_DIRECT = 0o40000;
const flagsOf = (fd: number): number => parseInt(/^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);

test('setDirectIO sets and clears O_DIRECT on a file; a file that cannot have it is told apart and left as it was', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 's3z-direct-'));
  const fd = openSync(path.join(dir, 'f'), 'w');
  const devnull = openSync('/dev/null', 'r+');
  try {
    assert.equal(flagsOf(fd) & O_DIRECT, 0);
    assert.equal(setDirectIO(fd, true), true);
    assert.equal(flagsOf(fd) & O_DIRECT, O_DIRECT, 'the kernel has the flag');
    assert.equal(setDirectIO(fd, false), true);
    assert.equal(flagsOf(fd) & O_DIRECT, 0, 'and it is cleared again');
    const before = flagsOf(devnull);
    assert.equal(setDirectIO(devnull, true), false, '/dev/null has no direct I/O');
    assert.equal(flagsOf(devnull), before);
    assert.throws(() => setDirectIO(-1, true), RangeError);
    assert.throws(() => setDirectIO(1.5, true), RangeError);
    assert.throws(() => setDirectIO(fd, 1 as unknown as boolean), TypeError);
  } finally {
    closeSync(fd);
    closeSync(devnull);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('alignmentGap: skipping it reaches the boundary; bad arguments are refused before the addon', () => {
  const view = new Uint8Array(new SharedArrayBuffer(3 * DIRECT_IO_ALIGN));
  for (const at of [0, 1, 16, 4095, 4096, 5000]) {
    const v = view.subarray(at);
    const gap = alignmentGap(v, DIRECT_IO_ALIGN)!;
    assert.ok(gap >= 0 && gap < DIRECT_IO_ALIGN);
    assert.equal(fileNative().addressMod(v.subarray(gap), DIRECT_IO_ALIGN), 0, `from offset ${at}`);
  }
  assert.throws(() => alignmentGap(view, 3000), RangeError);
  assert.throws(() => alignmentGap(view, 0), RangeError);
  assert.throws(() => alignmentGap({} as Uint8Array, 4096), TypeError);
  assert.throws(() => fileNative().addressMod(view, 3), TypeError, 'the addon checks too');
});

test('BlockBuffers with align: every buffer, new or used again, starts on the boundary and has the block size', () => {
  const pool = new BlockBuffers(64 * 1024, 4, { align: DIRECT_IO_ALIGN });
  assert.equal(pool.aligned, true);
  const first = Array.from({ length: 6 }, () => pool.acquire());
  for (const b of first) {
    assert.equal(b.length, 64 * 1024);
    assert.equal(fileNative().addressMod(b, DIRECT_IO_ALIGN), 0);
  }
  for (const b of first) pool.release(b);
  for (let i = 0; i < 4; i++) {
    const b = pool.acquire();
    assert.ok(first.some((f) => f.buffer === b.buffer), 'memory used again');
    assert.equal(fileNative().addressMod(b, DIRECT_IO_ALIGN), 0);
  }
  // Without align nothing changes: offset 0 of the shared memory.
  const plain = new BlockBuffers(4096, 1);
  assert.equal(plain.acquire().byteOffset, 0);
  assert.throws(() => new BlockBuffers(4096, 1, { align: 100 }), RangeError);
});

test('directOrBuffered: a write the kernel refuses under O_DIRECT turns it off once and is done again, buffered', async () => {
  // A disk-backed folder (ext4 here): it refuses an O_DIRECT write from misaligned memory
  // with EINVAL, as a filesystem wanting another alignment than ours would.
  const dir = mkdtempSync(path.join('/var/tmp', 's3z-direct-'));
  const fh = await open(path.join(dir, 'f'), 'w+');
  try {
    const io = { direct: setDirectIO(fh.fd, true) };
    assert.equal(io.direct, true);
    const raw = Buffer.alloc(3 * DIRECT_IO_ALIGN);
    const gap = alignmentGap(raw, DIRECT_IO_ALIGN)!;
    const misaligned = raw.subarray(gap + 1, gap + 1 + DIRECT_IO_ALIGN).fill(7);
    const heard: unknown[] = [];
    // Two at once, as get's writes are: both are redone, and the fallback is heard once.
    const writes = [0, 1].map((k) => directOrBuffered(fh.fd, io, () => fh.write(misaligned, 0, DIRECT_IO_ALIGN, k * DIRECT_IO_ALIGN), (e) => heard.push(e)));
    for (const w of await Promise.all(writes)) assert.equal(w.bytesWritten, DIRECT_IO_ALIGN);
    assert.equal(heard.length, 1);
    assert.equal((heard[0] as NodeJS.ErrnoException).code, 'EINVAL');
    assert.equal(io.direct, false);
    assert.equal(flagsOf(fh.fd) & O_DIRECT, 0, 'O_DIRECT is off on the file');
    assert.ok(readFileSync(path.join(dir, 'f')).equals(Buffer.alloc(2 * DIRECT_IO_ALIGN, 7)));
    // Other errors, and errors of buffered I/O, are not retried.
    await assert.rejects(directOrBuffered(fh.fd, io, () => Promise.reject(Object.assign(new Error('x'), { code: 'EINVAL' }))), /x/);
    await assert.rejects(directOrBuffered(fh.fd, { direct: true }, () => Promise.reject(Object.assign(new Error('y'), { code: 'EIO' }))), /y/);
  } finally {
    await fh.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
