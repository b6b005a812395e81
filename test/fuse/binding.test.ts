// The FUSE binding over MemFs: data paths, request sizes, fsync, fallocate,
// errno propagation and option/handler validation.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { S3zError } from '../../dist/errors.js';
import { FALLOC_FL, errnoOf, mount, type FileSlice, type FuseHandlers, type HandlerName } from '../../dist/fuse/binding.js';
import { MemFs } from './memfs.js';
import { defer, fuseAvailable, MIB, mountMemFs, run, runOk, tempDir } from './helpers.js';

const E = constants.errno;

test('root directory holds one file, with its attributes and statfs', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, dir, file, fs } = await mountMemFs(t, {}, { size: 12345 });
  assert.equal(session.state, 'mounted');
  assert.deepEqual(await readdir(dir), ['file']);
  const st = await stat(file);
  assert.ok(st.isFile());
  assert.equal(st.size, 12345);
  assert.equal(st.mode & 0o777, 0o644);
  assert.ok((await stat(dir)).isDirectory());
  const sf = await statfs(dir);
  assert.equal(sf.bsize, 4096);
  assert.equal(sf.blocks, 1 << 20);
  assert.equal(fs.size, 12345);
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  assert.match(mounts, new RegExp(`^s3zmount ${dir} fuse\\.s3zmount `, 'm'));
});

test('patterned dd in and out matches with cmp', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs, base } = await mountMemFs(t);
  const pattern = join(base, 'pattern');
  const back = join(base, 'back');
  const data = randomBytes(8 * MIB + 12345); // not a whole number of blocks
  await writeFile(pattern, data);
  await runOk('dd', [`if=${pattern}`, `of=${file}`, 'bs=1M', 'conv=notrunc']);
  assert.ok(fs.content.equals(data), 'the filesystem holds what dd wrote');
  await runOk('dd', [`if=${file}`, `of=${back}`, 'bs=1M']);
  await runOk('cmp', [pattern, back]);
  // and once more at an odd block size and offset
  await runOk('dd', [`if=${pattern}`, `of=${file}`, 'bs=4000', 'seek=3', 'count=100', 'conv=notrunc']);
  const expect = Buffer.from(data);
  data.copy(expect, 12000, 0, 400000);
  await runOk('dd', [`if=${file}`, `of=${back}`, 'bs=1M']);
  assert.ok((await readFile(back)).equals(expect));
});

test('1 MiB dd requests arrive as 1 MiB requests', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, file, fs } = await mountMemFs(t);
  assert.equal(session.conn?.maxWrite, MIB);
  await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=16', 'conv=notrunc']);
  assert.deepEqual(fs.writeSizes, new Array(16).fill(MIB));
  await runOk('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'count=16']);
  assert.deepEqual(fs.readSizes.slice(0, 16), new Array(16).fill(MIB));
});

test('1 MiB O_DIRECT writes arrive as 1 MiB without direct_io on the file', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs } = await mountMemFs(t, {}, { directIo: false });
  await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=8', 'oflag=direct', 'conv=notrunc']);
  assert.deepEqual(fs.writeSizes, new Array(8).fill(MIB));
  // buffered 1 MiB writes too
  fs.writeSizes.length = 0;
  await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=8', 'conv=notrunc,fsync']);
  assert.equal(Math.max(...fs.writeSizes), MIB);
});

test('fsync and fdatasync reach the handler', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs } = await mountMemFs(t);
  await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', 'count=2', 'conv=notrunc,fsync']);
  assert.equal(fs.fsyncs.length, 1);
  assert.equal(fs.fsyncs[0]?.datasync, false);
  await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', 'count=2', 'conv=notrunc,fdatasync']);
  assert.equal(fs.fsyncs.length, 2);
  assert.equal(fs.fsyncs[1]?.datasync, true);
  const fh = await open(file, 'r+');
  try {
    await fh.sync();
    await fh.datasync();
  } finally {
    await fh.close();
  }
  assert.equal(fs.fsyncs.length, 4);
  assert.ok(fs.flushes.length >= 3, 'close flushes');
});

test('fallocate --punch-hole and --zero-range reach the handler and zero the range', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs } = await mountMemFs(t);
  const data = randomBytes(4 * MIB);
  await writeFile(file, data);
  await runOk('fallocate', ['--punch-hole', '--offset', String(MIB), '--length', String(MIB + 4096), file]);
  assert.deepEqual(fs.fallocates.at(-1), { offset: MIB, length: MIB + 4096, mode: FALLOC_FL.PUNCH_HOLE | FALLOC_FL.KEEP_SIZE });
  const expect = Buffer.from(data);
  expect.fill(0, MIB, 2 * MIB + 4096);
  assert.ok((await readFile(file)).equals(expect), 'punched range reads as zeros, the rest is intact');
  assert.equal((await stat(file)).size, 4 * MIB);

  await runOk('fallocate', ['--zero-range', '--keep-size', '--offset', '100', '--length', '5000', file]);
  assert.deepEqual(fs.fallocates.at(-1), { offset: 100, length: 5000, mode: FALLOC_FL.ZERO_RANGE | FALLOC_FL.KEEP_SIZE });
  expect.fill(0, 100, 5100);
  assert.ok((await readFile(file)).equals(expect));

  // zero range past the end without keep-size grows the file
  await runOk('fallocate', ['--zero-range', '--offset', String(4 * MIB - 10), '--length', '1010', file]);
  assert.deepEqual(fs.fallocates.at(-1), { offset: 4 * MIB - 10, length: 1010, mode: FALLOC_FL.ZERO_RANGE });
  assert.equal((await stat(file)).size, 4 * MIB + 1000);
});

test('errors carry their errno to the caller: EIO, EROFS, ENOSPC, ENOENT', async (t) => {
  if (!fuseAvailable(t)) return;
  const reported: Array<{ op: HandlerName; err: unknown }> = [];
  const { dir, file, fs } = await mountMemFs(t, { onError: (err, op) => reported.push({ op, err }) }, { size: MIB });
  const buf = Buffer.alloc(4096);

  fs.failures.set('read', new S3zError('ECORRUPT', 'block failed verification')); // errno EIO
  const r = await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=4k', 'count=1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Input\/output error/);

  // No child is spawned below while `fh` is open (see helpers.ts).
  const fh = await open(file, 'r+');
  defer(t, () => fh.close());
  await assert.rejects(fh.read(buf, 0, 4096, 0), { code: 'EIO' });
  fs.failures.set('read', Object.assign(new Error('node style'), { errno: -E.EIO }));
  await assert.rejects(fh.read(buf, 0, 4096, 0), { code: 'EIO' });
  fs.failures.delete('read');
  assert.equal((await fh.read(buf, 0, 4096, 0)).bytesRead, 4096);
  assert.equal(reported.length, 0, 'errors with an errno are not reported');

  fs.failures.set('write', new S3zError('EROFS', 'read-only store'));
  await assert.rejects(fh.write(buf, 0, 4096, 0), { code: 'EROFS' });
  fs.failures.set('write', Object.assign(new Error('full'), { errno: E.ENOSPC }));
  await assert.rejects(fh.write(buf, 0, 4096, 0), { code: 'ENOSPC' });
  fs.failures.delete('write');
  assert.equal((await fh.write(buf, 0, 4096, 0)).bytesWritten, 4096);

  await assert.rejects(stat(join(dir, 'missing')), { code: 'ENOENT' });

  fs.failures.set('fsync', new S3zError('ES3', 'upload failed'));
  await assert.rejects(fh.sync(), { code: 'EIO' });
  fs.failures.delete('fsync');

  // an error without errno answers EIO and is reported
  fs.failures.set('read', new TypeError('a bug'));
  await assert.rejects(fh.read(buf, 0, 4096, 0), { code: 'EIO' });
  fs.failures.delete('read');
  assert.equal(reported.length, 1);
  assert.equal(reported[0]?.op, 'read');
});

test('a handler result of the wrong shape answers EIO and is reported', async (t) => {
  if (!fuseAvailable(t)) return;
  const reported: HandlerName[] = [];
  const { file, fs } = await mountMemFs(t, { onError: (_err, op) => reported.push(op) }, { size: MIB });
  const handlers = fs.handlers;
  // mount a second one whose read returns a string
  const base = await tempDir(t);
  await mkdir(join(base, 'm'));
  const s2 = await mount(join(base, 'm'), { onError: (_err, op) => reported.push(op) }, {
    ...handlers,
    read: () => 'not a buffer' as unknown as Uint8Array,
  });
  defer(t, () => s2.unmount());
  const fh = await open(join(base, 'm', 'file'), 'r');
  try {
    await assert.rejects(fh.read(Buffer.alloc(10), 0, 10, 0), { code: 'EIO' });
  } finally {
    await fh.close();
  }
  assert.deepEqual(reported, ['read']);
  assert.ok((await readFile(file)).length === MIB);
});

test('read-only mount refuses writes in the kernel', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs, dir } = await mountMemFs(t, { readOnly: true }, { size: 4096 });
  await assert.rejects(open(file, 'r+'), { code: 'EROFS' });
  await assert.rejects(writeFile(join(dir, 'file'), 'x'), { code: 'EROFS' });
  assert.equal(fs.writeSizes.length, 0);
  assert.equal((await readFile(file)).length, 4096);
  assert.match(await readFile('/proc/self/mounts', 'utf8'), new RegExp(`${dir} fuse\\.s3zmount ro,`));
});

test('options: fsname, subtype, allowOther; writeBuffers "borrowed" round-trips data', async (t) => {
  if (!fuseAvailable(t)) return;
  const { file, fs, dir } = await mountMemFs(t, { fsname: 'test:fs/name', subtype: 'memfs', allowOther: true, writeBuffers: 'borrowed' }, { size: 0 });
  const line = (await readFile('/proc/self/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === dir) ?? '';
  assert.match(line, /^test:fs\/name \S+ fuse\.memfs /);
  assert.match(line, /allow_other/);
  const data = randomBytes(3 * MIB + 5);
  await writeFile(file, data);
  assert.ok(fs.content.equals(data), 'MemFs copies what it keeps, so borrowing is safe');
  assert.ok((await readFile(file)).equals(data));
});

for (const writeBuffers of ['borrowed', 'lent'] as const) {
  test(`${writeBuffers} write payloads hold the data until the handler settles, then are detached`, async (t) => {
    if (!fuseAvailable(t)) return;
    const base = await tempDir(t);
    const dir = join(base, 'm');
    await mkdir(dir);
    const kept: Buffer[] = [];
    const seen: Array<{ offset: number; bytes: Buffer }> = [];
    const fs = new MemFs();
    const h = fs.handlers;
    const session = await mount(dir, { writeBuffers }, {
      ...h,
      write: async (ino, fh, offset, data, flags) => {
        kept.push(data);
        // still valid across an await inside the handler
        await new Promise((r) => setImmediate(r));
        seen.push({ offset, bytes: Buffer.from(data) });
        return h.write!(ino, fh, offset, data, flags);
      },
    });
    defer(t, () => session.unmount());
    // Three rounds of writes: a lent buffer is reused for the next write, which must
    // not show through what an earlier handler saw.
    const data = randomBytes(3 * MIB);
    const src = join(base, 'src');
    await writeFile(src, data);
    for (let round = 0; round < 3; round++) {
      await runOk('dd', [`if=${src}`, `of=${join(dir, 'file')}`, 'bs=1M', `count=${round + 1}`, 'conv=notrunc']);
    }
    assert.ok(kept.length >= 6);
    for (const b of kept) assert.equal(b.length, 0, 'detached');
    assert.equal(seen.reduce((n, s) => n + s.bytes.length, 0), 6 * MIB);
    for (const s of seen) assert.ok(s.bytes.equals(data.subarray(s.offset, s.offset + s.bytes.length)), `the bytes seen at ${s.offset}`);
    assert.ok(fs.content.equals(data.subarray(0, 3 * MIB)));
  });
}

test('owned write payloads stay valid after the handler settles', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  const dir = join(base, 'm');
  await mkdir(dir);
  const kept: Buffer[] = [];
  const fs = new MemFs();
  const h = fs.handlers;
  const session = await mount(dir, {}, {
    ...h,
    write: (ino, fh, offset, data, flags) => {
      kept.push(data);
      return h.write!(ino, fh, offset, data, flags);
    },
  });
  defer(t, () => session.unmount());
  const data = randomBytes(3 * MIB);
  await writeFile(join(dir, 'file'), data);
  assert.ok(kept.length >= 3);
  assert.ok(Buffer.concat(kept).equals(data));
});

test('errnoOf normalises errno values', () => {
  assert.equal(errnoOf(new S3zError('EROFS', 'x')), E.EROFS);
  assert.equal(errnoOf(Object.assign(new Error(), { errno: -E.ENOENT })), E.ENOENT);
  assert.equal(errnoOf(new Error('plain')), undefined);
  assert.equal(errnoOf({ errno: 0 }), undefined);
  assert.equal(errnoOf({ errno: 1.5 }), undefined);
  assert.equal(errnoOf(null), undefined);
});

test('invalid options and handlers throw a TypeError before any native call', () => {
  assert.throws(() => mount('', {}, {}), TypeError);
  assert.throws(() => mount('/tmp', { bogus: 1 } as never, {}), /unknown mount option "bogus"/);
  assert.throws(() => mount('/tmp', { maxWrite: 5000 }, {}), /multiple of 4096/);
  assert.throws(() => mount('/tmp', { maxWrite: 2 * MIB }, {}), /maxWrite/);
  assert.throws(() => mount('/tmp', { fsname: 'a,b' }, {}), /fsname/);
  assert.throws(() => mount('/tmp', { subtype: 'a b' }, {}), /subtype/);
  assert.throws(() => mount('/tmp', { readOnly: 'yes' } as never, {}), /readOnly/);
  assert.throws(() => mount('/tmp', { writeBuffers: 'mine' } as never, {}), /writeBuffers/);
  assert.throws(() => mount('/tmp', {}, { read: 42 } as never), /handlers\.read must be a function/);
  assert.throws(() => mount('/tmp', null as never, {}), TypeError);
  assert.throws(() => mount('/tmp', {}, null as never), TypeError);
});

test('missing handlers answer ENOSYS or a sensible default', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  const dir = join(base, 'm');
  await mkdir(dir);
  // only lookup and getattr: open/release/flush default to success, read is ENOSYS
  const session = await mount(dir, {}, {
    lookup: (parent, name) => {
      if (parent === 1 && name === 'f') return { ino: 2, attr: { mode: 0o100644, size: 10 } };
      throw Object.assign(new Error(), { errno: E.ENOENT });
    },
    getattr: (ino) => (ino === 1 ? { mode: 0o040755, size: 0 } : { mode: 0o100644, size: 10 }),
  });
  defer(t, () => session.unmount());
  const fh = await open(join(dir, 'f'), fsConstants.O_RDONLY);
  try {
    await assert.rejects(fh.read(Buffer.alloc(10), 0, 10, 0), { code: 'ENOSYS' });
  } finally {
    await fh.close();
  }
  await assert.rejects(readdir(dir), { code: 'ENOSYS' });
  const sf = await statfs(dir);
  assert.equal(sf.blocks, 0);
});

/** Mounts MemFs with a read handler that answers from `read` instead; the session and its file. */
async function mountWithRead(t: TestContext, read: NonNullable<FuseHandlers['read']>, size: number, onError?: (err: unknown, op: HandlerName) => void) {
  const fs = new MemFs({ size });
  const base = await tempDir(t);
  const dir = join(base, 'mnt');
  await mkdir(dir);
  const session = await mount(dir, onError === undefined ? {} : { onError }, { ...fs.handlers, read });
  defer(t, () => session.unmount({ timeoutMs: 2000 }));
  return { session, file: join(dir, fs.fileName), base };
}

/** Slices of [0, size) of the file `fdOf()` names, counting how many were handed out and released (twice fails). */
function countedSlices(size: number, fdOf: () => number) {
  const counts = { handed: 0, released: 0 };
  const slice = (offset: number, want: number): FileSlice => {
    counts.handed++;
    let done = false;
    return {
      fd: fdOf(),
      position: offset,
      length: Math.max(0, Math.min(want, size - offset)),
      release: () => {
        assert.equal(done, false, 'released twice');
        done = true;
        counts.released++;
      },
    };
  };
  return { counts, slice };
}

test('a read answered with a FileSlice serves the file\'s bytes, and each slice is released once', async (t) => {
  if (!fuseAvailable(t)) return;
  const size = 4 * MIB + 12345;
  const data = randomBytes(size);
  const base = await tempDir(t);
  const src = join(base, 'src');
  await writeFile(src, data);
  const fd = openSync(src, 'r');
  defer(t, () => closeSync(fd));
  const { counts, slice } = countedSlices(size, () => fd);
  // A promise of a slice, as an async handler gives.
  const { file } = await mountWithRead(t, (_ino, _fh, offset, want) => Promise.resolve(slice(offset, want)), size);
  const back = join(base, 'back');
  await runOk('dd', [`if=${file}`, `of=${back}`, 'bs=1M', 'iflag=direct']);
  assert.ok((await readFile(back)).equals(data), 'the bytes read are the file\'s');
  // odd offsets and sizes, through the page cache
  const h = await open(file, 'r');
  try {
    const got = Buffer.alloc(300000);
    const { bytesRead } = await h.read(got, 0, got.length, 1000001);
    assert.equal(bytesRead, got.length);
    assert.ok(got.equals(data.subarray(1000001, 1000001 + got.length)));
  } finally {
    await h.close();
  }
  assert.ok(counts.handed > 0);
  for (let i = 0; i < 100 && counts.released < counts.handed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(counts.released, counts.handed, 'every slice handed to the binding was released');
});

test('a read answered with LentBytes serves them, and each is released once, after its reply', async (t) => {
  if (!fuseAvailable(t)) return;
  const size = 3 * MIB + 4321;
  const data = randomBytes(size);
  let handed = 0;
  let released = 0;
  const { file, session } = await mountWithRead(t, async (_ino, _fh, offset, want) => {
    handed++;
    // A copy that is wiped on release: a reply sent after it would read zeros.
    const bytes = Buffer.from(data.subarray(offset, Math.min(size, offset + want)));
    let done = false;
    return {
      bytes,
      release: () => {
        assert.equal(done, false, 'released twice');
        done = true;
        released++;
        bytes.fill(0);
      },
    };
  }, size);
  const back = join(await tempDir(t), 'back');
  await runOk('dd', [`if=${file}`, `of=${back}`, 'bs=1M', 'iflag=direct']);
  assert.ok((await readFile(back)).equals(data), 'the bytes read are the ones lent');
  assert.ok(handed >= 4);
  assert.equal(released, handed, 'every lent reply was released');
  assert.equal(session.sliceReplies.lent, handed);
});

test('a bad FileSlice is refused in JS (EIO, reported, released); a file that cannot supply the bytes answers EIO, never short', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  const src = join(base, 'short');
  await writeFile(src, randomBytes(100000)); // shorter than the slices asked of it
  const fd = openSync(src, 'r');
  defer(t, () => closeSync(fd));
  const reported: unknown[] = [];
  let released = 0;
  const release = (): void => {
    released++;
  };
  let next: () => unknown = () => undefined;
  const { file } = await mountWithRead(t, () => next() as FileSlice, MIB, (err) => reported.push(err));
  const h = await open(file, fsConstants.O_RDONLY | fsConstants.O_DIRECT);
  const buf = Buffer.alloc(256 * 1024, 0xaa);
  // O_DIRECT wants an aligned buffer: readv of an aligned slice of a bigger one
  const aligned = (() => {
    const b = Buffer.alloc(buf.length + 4096);
    const off = (4096 - (Number(b.byteOffset) % 4096)) % 4096;
    return b.subarray(off, off + buf.length);
  })();
  const readOnce = async (): Promise<NodeJS.ErrnoException | number> => {
    try {
      return (await h.read(aligned, 0, aligned.length, 0)).bytesRead;
    } catch (err) {
      return err as NodeJS.ErrnoException;
    }
  };
  try {
    const cases: Array<[string, () => unknown, boolean]> = [
      ['negative fd', () => ({ fd: -1, position: 0, length: 10, release }), true],
      ['length beyond the request', () => ({ fd, position: 0, length: 100 * MIB, release }), true],
      ['no release', () => ({ fd, position: 0, length: 10 }), false],
      ['not a slice', () => ({ nope: true }), false],
    ];
    for (const [what, make, releasable] of cases) {
      next = make;
      const before = released;
      const r = await readOnce();
      assert.equal(typeof r === 'number' ? r : r.code, 'EIO', what);
      assert.equal(released - before, releasable ? 1 : 0, `${what}: released`);
    }
    assert.equal(reported.length, cases.length);
    assert.ok(reported.every((e) => e instanceof TypeError), 'bad slices are reported as TypeErrors');
    // The file ends inside the slice: EIO, not a short read nor zeros.
    next = () => ({ fd, position: 0, length: aligned.length, release });
    let r = await readOnce();
    assert.equal(typeof r === 'number' ? r : r.code, 'EIO', 'short file');
    // A descriptor that is not open.
    next = () => ({ fd: 1_000_000, position: 0, length: aligned.length, release });
    r = await readOnce();
    assert.equal(typeof r === 'number' ? r : r.code, 'EIO', 'closed fd');
    // released once the pool's reply is out, which may be just after the reader got it
    for (let i = 0; i < 100 && released < 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(released, 4, 'the slices the pool could not send were released too');
    assert.ok(reported.slice(cases.length).every((e) => e instanceof S3zError && e.errno === E.EIO), 'failed slice replies are reported');
    // And a good one still works after all that.
    next = () => ({ fd, position: 0, length: 65536, release });
    r = await readOnce();
    assert.equal(r, 65536);
  } finally {
    await h.close();
  }
});

test('a FileSlice whose pages are cached is sent on the JS thread; one that is not (tmpfs, dropped pages) goes through the pool, same bytes', async (t) => {
  if (!fuseAvailable(t)) return;
  const size = 4 * MIB;
  // A disk file system whose buffered reads honour RWF_NOWAIT: the checkout's .cache
  // (os.tmpdir() may itself be a tmpfs on some machines).
  const diskRoot = fileURLToPath(new URL('../../.cache/', import.meta.url));
  await mkdir(diskRoot, { recursive: true });
  const base = await mkdtemp(join(diskRoot, 's3z-nowait-'));
  defer(t, () => rm(base, { recursive: true, force: true }));
  const TMPFS_MAGIC = 0x01021994;
  assert.notEqual((await statfs(base)).type, TMPFS_MAGIC, `${base} must be on a disk file system for this test`);
  const shm = await mkdtemp(join('/dev/shm', 's3z-nowait-')); // tmpfs: RWF_NOWAIT fails there (EOPNOTSUPP)
  defer(t, () => rm(shm, { recursive: true, force: true }));
  const files = new Map<string, { fd: number; data: Buffer; path: string }>();
  for (const [name, dir] of [['disk', base], ['tmpfs', shm]] as const) {
    const data = randomBytes(size);
    const path = join(dir, `src-${name}`);
    await writeFile(path, data);
    const fd = openSync(path, 'r');
    defer(t, () => closeSync(fd));
    files.set(name, { fd, data, path });
  }
  let src = files.get('disk')!;
  const { counts, slice } = countedSlices(size, () => src.fd);
  const { session, file, base: mbase } = await mountWithRead(t, (_ino, _fh, offset, want) => slice(offset, want), size);
  const back = join(mbase, 'back');
  const readAll = async (what: string): Promise<void> => {
    await runOk('dd', [`if=${file}`, `of=${back}`, 'bs=1M', 'iflag=direct']);
    assert.ok((await readFile(back)).equals(src.data), `${what}: the bytes read are the file's`);
  };

  // Just written, so in the page cache: every reply is sent on the JS thread.
  await readAll('cached');
  const first = counts.handed; // 4 blocks and dd's read at the end (length 0)
  assert.ok(first >= 4);
  assert.deepEqual(session.sliceReplies, { sentHere: first, pooled: 0, lent: 0 });
  assert.equal(counts.released, counts.handed, 'slices sent on the JS thread are released at once');

  // tmpfs cannot answer without possibly waiting: every reply goes through the pool.
  src = files.get('tmpfs')!;
  await readAll('tmpfs');
  const second = counts.handed - first;
  // a reply of length 0 needs no read: sent here even from tmpfs
  assert.deepEqual(session.sliceReplies, { sentHere: first + second - 4, pooled: 4, lent: 0 });

  // The disk file's pages dropped: the first read cannot be sent without the disk.
  if (process.getuid?.() === 0) {
    src = files.get('disk')!;
    await runOk('sync', [src.path]);
    await writeFile('/proc/sys/vm/drop_caches', '1');
    await readAll('dropped');
    const { sentHere, pooled } = session.sliceReplies;
    assert.ok(pooled >= 5, `a read of dropped pages goes through the pool (pooled ${pooled})`);
    assert.equal(sentHere + pooled, counts.handed);
  } else {
    t.diagnostic('not root: the dropped-pages case needs /proc/sys/vm/drop_caches');
  }
  for (let i = 0; i < 100 && counts.released < counts.handed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(counts.released, counts.handed, 'every slice handed to the binding was released');
});
