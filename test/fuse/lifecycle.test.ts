// Mount and unmount life cycle: failed mounts say why, unmount waits for or
// abandons in-flight requests, unmounts from outside end the session, signals
// (opt-in) and process exit leave no mount, and a crashed server's dead mount
// is reported and cleared with fusermount3 -u.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { S3zError } from '../../dist/errors.js';
import { mount } from '../../dist/fuse/binding.js';
import { MemFs } from './memfs.js';
import { defer, fuseAvailable, isMounted, isRoot, mountMemFs, runOk, tempDir, waitFor } from './helpers.js';

const E = constants.errno;
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child-mount.js');

function isMountError(errno: number, message: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof S3zError, `an S3zError, got ${String(err)}`);
    assert.equal(err.code, 'EMOUNT');
    assert.equal(err.errno, errno);
    assert.match(err.message, message);
    return true;
  };
}

test('mounting on a missing directory says so', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  await assert.rejects(mount(join(base, 'nope'), {}, new MemFs().handlers), isMountError(E.ENOENT, /nope: the mount point does not exist/));
  await assert.rejects(mount(join(base, 'nope', 'deeper'), {}, new MemFs().handlers), isMountError(E.ENOENT, /does not exist/));
  await writeFile(join(base, 'f'), '');
  await assert.rejects(mount(join(base, 'f'), {}, new MemFs().handlers), isMountError(E.ENOTDIR, /not a directory/));
});

test('mounting on a busy mount point says so (fuse3 would stack)', async (t) => {
  if (!fuseAvailable(t)) return;
  const { dir, session } = await mountMemFs(t);
  await assert.rejects(mount(dir, {}, new MemFs().handlers), isMountError(E.EBUSY, /already a mount point \(fuse\.s3zmount from s3zmount\); unmount it first/));
  assert.equal(session.state, 'mounted');
  // relative spelling of the same directory
  const rel = join(dir, '..', 'mnt');
  await assert.rejects(mount(rel, {}, new MemFs().handlers), isMountError(E.EBUSY, /already a mount point/));
});

test('mounting without permission on /dev/fuse says so', async (t) => {
  if (!fuseAvailable(t)) return;
  if (!isRoot) {
    t.skip('needs root to run a child as another user');
    return;
  }
  const base = await tempDir(t);
  await chmod(base, 0o777);
  const dir = join(base, 'mnt');
  await mkdir(dir, { mode: 0o777 });
  await chmod(dir, 0o777);
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, 'exit'], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('exit', () => resolve(text));
  });
  if (/EACCES: permission denied, open .*dist/.test(out) || /Cannot find module/.test(out)) {
    t.skip('the build is not readable by nobody');
    return;
  }
  assert.match(out, /^error EMOUNT 13 .*no permission to open \/dev\/fuse/m);
  assert.equal(isMounted(dir), false);
});

test('unmount waits for in-flight requests', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, fs, file } = await mountMemFs(t, {}, { size: 4096 });
  let release!: () => void;
  fs.readGate = new Promise<void>((r) => (release = r));
  const fh = await open(file, 'r');
  defer(t, () => fh.close().catch(() => undefined));
  const reading = fh.read(Buffer.alloc(4096), 0, 4096, 0);
  await waitFor(() => fs.readsWaiting === 1, 5000, 'the read to reach the handler');
  assert.equal(session.inflight, 1);
  const unmounting = session.unmount({ timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(session.state, 'unmounting');
  release();
  assert.equal((await reading).bytesRead, 4096, 'the in-flight read completed');
  await fh.close();
  await unmounting;
  assert.equal(session.state, 'closed');
  assert.equal(isMounted(session.mountpoint), false);
});

test('unmount completes while a read is stuck; the reader gets an error', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, fs, file } = await mountMemFs(t, {}, { size: 4096 });
  fs.readGate = new Promise<void>(() => undefined); // never settles
  const fh = await open(file, 'r');
  const reading = fh.read(Buffer.alloc(4096), 0, 4096, 0).finally(() => fh.close());
  reading.catch(() => undefined); // asserted below
  await waitFor(() => fs.readsWaiting === 1, 5000, 'the read to reach the handler');
  const started = Date.now();
  await session.unmount({ timeoutMs: 300 });
  assert.ok(Date.now() - started < 5000);
  await assert.rejects(reading, { code: 'EIO' });
  await session.closed;
  assert.equal(session.state, 'closed');
  assert.equal(isMounted(session.mountpoint), false);
});

test('unmount completes while a stuck reader keeps its file open (connection abort)', async (t) => {
  if (!fuseAvailable(t)) return;
  if (!isRoot) {
    t.skip('aborting through fusectl needs root');
    return;
  }
  const { session, fs, file } = await mountMemFs(t, {}, { size: 4096 });
  fs.readGate = new Promise<void>(() => undefined);
  const fh = await open(file, 'r');
  defer(t, () => fh.close().catch(() => undefined));
  const reading = fh.read(Buffer.alloc(4096), 0, 4096, 0);
  reading.catch(() => undefined); // asserted below
  await waitFor(() => fs.readsWaiting === 1, 5000, 'the read to reach the handler');
  await session.unmount({ timeoutMs: 300 });
  await assert.rejects(reading, { code: 'EIO' });
  assert.equal(session.state, 'closed');
  assert.equal(isMounted(session.mountpoint), false);
  await assert.rejects(fh.read(Buffer.alloc(10), 0, 10, 0)); // the connection is gone
});

test('unmount completes while a borrowed write is stuck (its worker thread is released)', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, fs, file } = await mountMemFs(t, { writeBuffers: 'borrowed', threads: 2 }, { size: 4096 });
  fs.writeGate = new Promise<void>(() => undefined);
  const fh = await open(file, 'r+');
  const writing = fh.write(Buffer.alloc(4096, 1), 0, 4096, 0).finally(() => fh.close());
  writing.catch(() => undefined); // asserted below
  await waitFor(() => fs.writesWaiting === 1, 5000, 'the write to reach the handler');
  await session.unmount({ timeoutMs: 300 });
  await assert.rejects(writing, { code: 'EIO' });
  assert.equal(session.state, 'closed');
  assert.equal(isMounted(session.mountpoint), false);
});

test('an unmount from outside (fusermount3 -u) ends the session', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, dir } = await mountMemFs(t);
  await runOk('fusermount3', ['-u', dir]);
  await session.closed;
  assert.equal(session.state, 'closed');
  await session.unmount(); // a no-op now
  assert.equal(isMounted(dir), false);
});

test('unmount is idempotent and concurrent calls share one unmount', async (t) => {
  if (!fuseAvailable(t)) return;
  const { session, dir } = await mountMemFs(t);
  const a = session.unmount();
  const b = session.unmount();
  assert.equal(a, b);
  await a;
  await session.unmount();
  assert.equal(isMounted(dir), false);
});

interface Child {
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready: Promise<void>;
  kill: (sig: NodeJS.Signals) => void;
  output: () => string;
}

function startChild(t: Parameters<typeof defer>[0], dir: string, mode: 'exit' | 'signals' | 'idle'): Child {
  const child = spawn(process.execPath, [CHILD, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let onReady!: () => void;
  let onFail!: (err: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('ready')) onReady();
    if (out.includes('error')) onFail(new Error(out));
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.on('exit', (code, signal) => {
      onFail(new Error(`child exited (${code ?? signal}) before ready: ${out}`));
      res({ code, signal });
    });
  });
  defer(t, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { exit, ready, kill: (sig) => child.kill(sig), output: () => out };
}

test('a normal process exit leaves no mount', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  const dir = join(base, 'mnt');
  await mkdir(dir);
  const child = startChild(t, dir, 'exit');
  const res = await child.exit;
  assert.equal(res.code, 0, child.output());
  assert.match(child.output(), /ready/);
  assert.equal(isMounted(dir), false);
});

test('unmountOnSignals: SIGTERM and SIGINT unmount cleanly, then the signal ends the process', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const dir = join(base, sig);
    await mkdir(dir);
    const child = startChild(t, dir, 'signals');
    await child.ready;
    assert.equal(isMounted(dir), true);
    child.kill(sig);
    const res = await child.exit;
    assert.equal(res.signal, sig, child.output());
    assert.equal(isMounted(dir), false);
  }
});

test('after a crash, the dead mount is reported and fusermount3 -u clears it', async (t) => {
  if (!fuseAvailable(t)) return;
  const base = await tempDir(t);
  const dir = join(base, 'mnt');
  await mkdir(dir);
  const child = startChild(t, dir, 'idle');
  await child.ready;
  child.kill('SIGKILL');
  await child.exit;
  assert.equal(isMounted(dir), true, 'a crash leaves the mount behind');
  await assert.rejects(mount(dir, {}, new MemFs().handlers), isMountError(E.EBUSY, /already a mount point .*fusermount3 -u/));
  await runOk('fusermount3', ['-u', dir]);
  assert.equal(isMounted(dir), false);
  const session = await mount(dir, {}, new MemFs().handlers);
  defer(t, () => session.unmount());
  assert.equal(session.state, 'mounted');
});
