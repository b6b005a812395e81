// put and get end to end, as a user runs them: the built CLI against a real S3
// (s3rver, or RGW with S3Z_TEST_S3=rgw), real files, and a fault proxy in front
// that counts the requests (a second put must send no PUT at all).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseS3Url } from '../../dist/s3/url.js';
import { LeaseHolder } from '../../dist/volume/lease.js';
import { silentLogger } from '../../dist/log.js';
import { CLI, startS3, testBucket, type TestS3 } from '../helpers/s3.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { runCli, failsWith } from '../helpers/cli.js';
import { until } from '../helpers/until.js';
import { inFlight } from '../../dist/commands/image-commands.js';

const BS = 64 * 1024;
let s3: TestS3;
let proxy: FaultProxy;
let dir: string;
before(async () => {
  s3 = await startS3();
  proxy = await startFaultProxy(s3.endpoint, { record: true });
  dir = await mkdtemp(path.join(tmpdir(), 's3z-image-'));
});
after(async () => {
  await proxy?.stop();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Through the counting proxy. */
const cli = (...args: string[]) => runCli(args, { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });

/** PUTs seen by the proxy since its last reset, apart from the lease's (taken, probed, released). */
const blockPuts = (): number => proxy.recorded('PUT').filter((r) => !/(^|\/)leases\/\d+$/.test(r.key)).length;

interface Piped {
  readonly stdin: NodeJS.WritableStream;
  readonly done: Promise<{ code: number | null; stdout: Buffer; stderr: string }>;
}

/** Starts the CLI with its stdin a pipe the caller writes and ends. */
function cliSpawn(args: string[]): Piped {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => undefined);
  const done = new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
  return { stdin: child.stdin, done };
}

/** Runs the CLI with `input` on stdin; returns stdout as bytes. */
function cliPiped(args: string[], input?: Buffer): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const run = cliSpawn(args);
  run.stdin.end(input ?? Buffer.alloc(0));
  return run.done;
}

/** A sparse image: data at the given blocks (one of them short, at the end if `tail`), holes elsewhere. */
async function makeImage(name: string, size: number, dataBlocks: number[]): Promise<string> {
  const file = path.join(dir, name);
  const fh = await open(file, 'w');
  await fh.truncate(size);
  for (const b of dataBlocks) await fh.write(randomBytes(Math.min(BS, size - b * BS)), 0, undefined, b * BS);
  await fh.close();
  return file;
}

/** A 4 MiB image of random bytes (every block stored), and those bytes. */
async function randomImage(name: string): Promise<{ img: string; bytes: Buffer }> {
  const img = path.join(dir, name);
  const bytes = randomBytes(4 * 1024 * 1024);
  await writeFile(img, bytes);
  return { img, bytes };
}

async function volume(size = '4M'): Promise<string> {
  const url = s3.url();
  const c = await cli('create', url, '--size', size, '--block-size', '64K');
  assert.equal(c.code, 0, c.stderr);
  return url;
}

async function storedIndexes(url: string): Promise<number[]> {
  const bucket = testBucket(s3);
  const loc = parseS3Url(url);
  const out: number[] = [];
  try {
    for await (const page of bucket.list(`${loc.prefix}/blocks/`)) for (const o of page) out.push(parseInt(o.key.slice(-12), 16));
  } finally {
    bucket.destroy();
  }
  return out.sort((a, b) => a - b);
}

/** Allocated bytes of a file, from st_blocks: what is not a hole. */
async function allocated(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

/** The byte ranges of a file that hold data (not holes), from filefrag's logical extents, merged. */
async function dataRanges(file: string): Promise<[number, number][]> {
  const text = execFileSync('filefrag', ['-e', '-b4096', file], { encoding: 'utf8' });
  const ranges: [number, number][] = [];
  for (const m of text.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):/gm)) {
    const start = Number(m[1]) * 4096;
    const end = (Number(m[2]) + 1) * 4096;
    const last = ranges.at(-1);
    if (last && last[1] === start) last[1] = end;
    else ranges.push([start, end]);
  }
  return ranges;
}

test('put then get round-trips a sparse image byte for byte, with holes where the volume stores nothing', async () => {
  const url = await volume();
  const img = await makeImage('sparse.img', 3 * 1024 * 1024, [0, 7, 8, 30]);
  proxy.resetCounts();
  const p = await cli('put', img, url);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /4 uploaded, 0 unchanged, 44 zero, 0 deleted/);
  assert.equal(blockPuts(), 4, 'one PUT per data block');
  assert.ok(proxy.requests('PUT') - blockPuts() >= 2, 'and the lease\'s own: taken, released');
  assert.deepEqual(await storedIndexes(url), [0, 7, 8, 30]);

  const out = path.join(dir, 'sparse.out');
  proxy.resetCounts();
  const g = await cli('get', url, out);
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /4 blocks fetched/);
  // Progress on a stderr that is not a terminal: the totals once the LIST has them, and a last line.
  assert.match(g.stderr, /^get: 4 blocks \(256 KiB\) to do$/m, g.stderr);
  assert.match(g.stderr, /^get: 4\/4 blocks, 256 KiB\/256 KiB \(100%\), [\d.]+ MB\/s, ETA 0s$/m, g.stderr);
  const blockLists = proxy.recorded('GET').filter((r) => r.key === '' && r.query.includes('blocks%2F'));
  assert.equal(blockLists.length, 1, 'one LIST of the blocks: the walk replays the count\'s pages');
  const [a, b] = await Promise.all([readFile(img), readFile(out)]);
  assert.equal(b.length, 4 * 1024 * 1024, 'the image is the volume size');
  assert.ok(b.subarray(0, a.length).equals(a), 'same bytes');
  assert.ok(b.subarray(a.length).equals(Buffer.alloc(b.length - a.length)), 'zeros past the put image');
  // The hole map: exactly the 4 stored blocks are allocated (ext4/tmpfs allocate in 4K pages).
  assert.equal(await allocated(out), 4 * BS);
  assert.deepEqual(await dataRanges(out), [[0, BS], [7 * BS, 9 * BS], [30 * BS, 31 * BS]], 'data at blocks 0, 7-8, 30 only');
});

test('put reads and get writes a file on disk with direct I/O: right bytes, and none of them left in the page cache', async () => {
  const url = await volume();
  // A disk-backed folder: on tmpfs every byte of a file is page cache by definition.
  const disk = await mkdtemp(path.join('/var/tmp', 's3z-direct-'));
  const onTmpfs = execFileSync('stat', ['-f', '-c', '%T', disk], { encoding: 'utf8' }).trim() === 'tmpfs';
  const resident = (file: string): string => execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim();
  try {
    const img = path.join(disk, 'direct.img');
    // 4 MiB less 1000 bytes: the last block is short, which O_DIRECT reads must still get whole.
    const bytes = randomBytes(4 * 1024 * 1024 - 1000);
    await writeFile(img, bytes);
    // Out of the page cache (GNU dd's idiom for it), so that a buffered read would bring it back.
    execFileSync('dd', [`of=${img}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0'], { stdio: 'ignore' });
    if (!onTmpfs) assert.equal(resident(img), '0');
    const p = await cli('put', '--log-level', 'debug', img, url);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /^s3zmount: debug: put: direct I\/O \(source=\S+, direct=true\)$/m);
    assert.match(p.stdout, /64 uploaded/);
    if (!onTmpfs) assert.equal(resident(img), '0', 'put read the image around the page cache');

    const out = path.join(disk, 'direct.out');
    const g = await cli('get', '--log-level', 'debug', url, out);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stderr, /^s3zmount: debug: get: direct I\/O \(target=\S+, direct=true\)$/m);
    // Before anything reads it back: written through the page cache, all 4 MiB would be resident.
    if (!onTmpfs) assert.equal(resident(out), '0', 'get wrote the image around the page cache');
    const got = await readFile(out);
    assert.equal(got.length, 4 * 1024 * 1024);
    assert.ok(got.subarray(0, bytes.length).equals(bytes), 'same bytes');
    assert.ok(got.subarray(bytes.length).equals(Buffer.alloc(1000)), 'zeros after the short image');
  } finally {
    await rm(disk, { recursive: true, force: true });
  }
});

test('put and get through two buffers at a time: every block of a full image round-trips (buffers are used again)', async () => {
  const url = await volume();
  const { img, bytes } = await randomImage('full.img');
  const p = await cli('put', img, url, '--concurrency', '2');
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /64 uploaded, 0 unchanged, 0 zero/);
  const out = path.join(dir, 'full.out');
  const g = await cli('get', url, out, '--concurrency', '2');
  assert.equal(g.code, 0, g.stderr);
  assert.ok((await readFile(out)).equals(bytes), 'same bytes');
  // The ETags S3 computed are the MD5s of what we meant to send: a second put sends nothing.
  const again = await cli('put', img, url);
  assert.match(again.stdout, /0 uploaded, 64 unchanged/);
});

test('requests in flight hold at most 512 MiB of blocks, whatever --concurrency asks; get defaults to 32', async () => {
  assert.equal(inFlight(32, 1024 * 1024), 32);
  assert.equal(inFlight(256, 1024 * 1024), 256);
  assert.equal(inFlight(256, 64 * 1024 * 1024), 8);
  assert.equal(inFlight(16, 64 * 1024 * 1024), 8);
  assert.equal(inFlight(2, 64 * 1024 * 1024), 2);
  const help = await cli('get', '--help');
  assert.match(help.stdout, /--concurrency <n>[^]*512 MiB of blocks\) \(default: "32"\)/);
});

test('a second put of the same image sends no PUT; a changed image sends only what changed and deletes what became zero', async () => {
  const url = await volume();
  const img = await makeImage('again.img', 4 * 1024 * 1024, [1, 2, 3, 40, 63]);
  assert.equal((await cli('put', img, url)).code, 0);
  proxy.resetCounts();
  const again = await cli('put', img, url);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /0 uploaded, 5 unchanged/);
  assert.equal(blockPuts(), 0, 'no block PUT');
  assert.equal(proxy.requests('HEAD'), 0, 'no HEAD per block: the ETag from the LIST is the check');

  // Block 2 changes, block 3 becomes zero.
  const fh = await open(img, 'r+');
  await fh.write(randomBytes(BS), 0, BS, 2 * BS);
  await fh.write(Buffer.alloc(BS), 0, BS, 3 * BS);
  await fh.close();
  proxy.resetCounts();
  const changed = await cli('put', img, url);
  assert.match(changed.stdout, /1 uploaded, 3 unchanged, 60 zero, 1 deleted/);
  assert.equal(blockPuts(), 1);
  assert.deepEqual(await storedIndexes(url), [1, 2, 40, 63]);

  // A smaller image: the rest of the volume must read as zeros, so blocks past its end go.
  const small = await makeImage('small.img', 3 * BS, [1]);
  const s = await cli('put', small, url);
  assert.equal(s.code, 0, s.stderr);
  assert.deepEqual(await storedIndexes(url), [1]);
});

test('get --force resumes: blocks already right are not fetched again', async () => {
  const url = await volume();
  const img = await makeImage('resume.img', 4 * 1024 * 1024, [0, 5, 6, 9]);
  assert.equal((await cli('put', img, url)).code, 0);
  const out = path.join(dir, 'resume.out');
  assert.equal((await cli('get', url, out)).code, 0);
  // As if cut short: one block lost, one block of stale data where the volume has none.
  const fh = await open(out, 'r+');
  await fh.write(Buffer.alloc(BS), 0, BS, 5 * BS);
  await fh.write(Buffer.alloc(BS, 7), 0, BS, 20 * BS);
  await fh.close();
  proxy.resetCounts();
  const g = await cli('get', url, out, '--force');
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /1 block fetched, 3 already there, 1 zeroed/);
  const [a, b] = await Promise.all([readFile(img), readFile(out)]);
  assert.ok(a.equals(b));
});

test('get onto a disk that fills up: one line saying so and how to go on; with room again, get --force finishes it', async () => {
  const url = await volume();
  const { img, bytes } = await randomImage('fill.img');
  assert.equal((await cli('put', img, url)).code, 0);
  // A 1 MiB disk for a 4 MiB image (tmpfs: a mount of its own, removed whatever happens).
  const small = await mkdtemp(path.join(tmpdir(), 's3z-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', small]);
  try {
    const out = path.join(small, 'fill.out');
    failsWith(await cli('get', '--quiet', url, out), 1, /fill\.out: no space left on its disk; \S*fill\.out is incomplete; run the same get with --force to go on from where it stopped$/);
    execFileSync('mount', ['-o', 'remount,size=8M', small]);
    const g = await cli('get', url, out, '--force');
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /already there/);
    assert.ok((await readFile(out)).equals(bytes), 'same bytes');
  } finally {
    execFileSync('umount', [small]);
    await rm(small, { recursive: true, force: true });
  }
});

test('S3 refusing one block mid-way: put and get stop with one line saying to run them again, and the second run does only what is left', async () => {
  const url = await volume();
  const { img, bytes } = await randomImage('cut.img');
  // Block 30 (0x1e): refused for good (403 is not retried), so the run stops there.
  const block30 = /\/blocks\/0*1e$/;
  const putRule = proxy.addRule({ method: 'PUT', key: block30, times: Infinity, action: { status: 403, code: 'AccessDenied' } });
  try {
    failsWith(await cli('put', '--quiet', '--concurrency', '2', img, url), 1, /; run the same put again: it sends only what still differs$/);
  } finally {
    proxy.clearRules();
  }
  assert.ok(proxy.fired(putRule) >= 1);
  const again = await cli('put', img, url);
  assert.equal(again.code, 0, again.stderr);
  const m = /(\d+) uploaded, (\d+) unchanged/.exec(again.stdout);
  assert.ok(m && Number(m[2]) > 0 && Number(m[1]) + Number(m[2]) === 64, `the second put sends only what is left: ${again.stdout}`);

  const out = path.join(dir, 'cut.out');
  proxy.addRule({ method: 'GET', key: block30, times: Infinity, action: { status: 403, code: 'AccessDenied' } });
  try {
    // Two at a time, so that the blocks before 30 are written when it fails.
    failsWith(await cli('get', '--quiet', '--concurrency', '2', url, out), 1, /cut\.out is incomplete; run the same get with --force to go on from where it stopped$/);
  } finally {
    proxy.clearRules();
  }
  // Damaged on every retry: running the get again would stop at the same block.
  proxy.addRule({ method: 'GET', key: block30, times: Infinity, action: 'corrupt' });
  try {
    failsWith(await cli('get', '--quiet', '--concurrency', '2', url, path.join(dir, 'corrupt.out')), 1, /block 30\b.*; \S*corrupt\.out is incomplete$/);
  } finally {
    proxy.clearRules();
  }
  const g = await cli('get', url, out, '--force');
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /[1-9]\d* already there/);
  assert.ok((await readFile(out)).equals(bytes), 'same bytes');
});

test('"-" is stdin for put and stdout for get', async () => {
  const url = await volume('1M');
  const data = Buffer.concat([randomBytes(BS), Buffer.alloc(3 * BS), randomBytes(1000)]);
  const p = await cliPiped(['put', '-', url], data);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout.toString(), /put stdin .* 2 uploaded, 0 unchanged, 3 zero/);
  const g = await cliPiped(['get', '--quiet', url, '-']);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(g.stderr, '');
  assert.equal(g.stdout.length, 1024 * 1024);
  assert.ok(g.stdout.subarray(0, data.length).equals(data));
  assert.ok(g.stdout.subarray(data.length).equals(Buffer.alloc(g.stdout.length - data.length)));
});

test('bad inputs: one clear line each', async () => {
  const url = await volume('1M');
  failsWith(await cli('put', path.join(dir, 'nope.img'), url), 1, /nope\.img: no such file or directory/);
  const img = await makeImage('big.img', 2 * 1024 * 1024, [0]);
  failsWith(await cli('put', img, url), 1, /big\.img: the image is 2097152 bytes, larger than the volume .* \(1048576 bytes\)/);
  failsWith(await cli('put', img, s3.url('none')), 1, /no volume there/);
  failsWith(await cli('get', s3.url('none'), path.join(dir, 'none.out')), 1, /no volume there/);
  await assert.rejects(stat(path.join(dir, 'none.out')), 'no empty image left behind');
  const existing = path.join(dir, 'existing.out');
  await writeFile(existing, 'x');
  failsWith(await cli('get', url, existing), 1, /existing\.out: already exists; pass --force/);
  failsWith(await cli('get', url, dir), 1, /is a directory/);
  // Regular files by stat, but the kernel's: no size to read, no offset to write at.
  failsWith(await cli('get', url, '/proc/version', '--force'), 1, /^s3zmount: \/proc\/version: a file of the kernel's \(procfs\), not a regular file or a block device$/);
  failsWith(await cli('put', '/sys/kernel/mm/transparent_hugepage/enabled', url), 1, /enabled: a file of the kernel's \(sysfs\)/);
  failsWith(await cli('put', img, url, '--concurrency', '0'), 2, /--concurrency/);
  const tooBig = await cliPiped(['put', '-', url], Buffer.alloc(1024 * 1024 + 1, 1));
  assert.equal(tooBig.code, 1);
  assert.match(tooBig.stderr.trim(), /^s3zmount: stdin: the image is larger than the volume \(1048576 bytes\)$/);
});

test('put - : a byte past the volume that arrives after every block was sent still fails the put', async () => {
  const url = await volume('1M');
  proxy.resetCounts();
  const run = cliSpawn(['put', '--quiet', '-', url]);
  run.stdin.write(randomBytes(1024 * 1024));
  // Every block of the volume is in S3 before the extra byte is written.
  for (const until = Date.now() + 30_000; blockPuts() < 16; ) {
    assert.ok(Date.now() < until, `only ${blockPuts()} of 16 blocks sent`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200));
  run.stdin.end(Buffer.from('x'));
  const p = await run.done;
  assert.equal(p.code, 1, p.stdout.toString());
  assert.match(p.stderr.trim(), /^s3zmount: stdin: the image is larger than the volume \(1048576 bytes\)$/);
});

test('an empty image is refused without --force, and changes nothing', async () => {
  const url = await volume('1M');
  assert.equal((await cliPiped(['put', '-', url], randomBytes(2 * BS))).code, 0);
  const empty = path.join(dir, 'empty.img');
  await writeFile(empty, '');
  failsWith(await cli('put', empty, url), 1, /^s3zmount: .*empty\.img: the image is empty; nothing was changed \(--force puts it anyway/);
  const piped = await cliPiped(['put', '-', url]);
  assert.equal(piped.code, 1);
  assert.match(piped.stderr.trim(), /^s3zmount: stdin: the image is empty; nothing was changed/);
  assert.deepEqual(await storedIndexes(url), [0, 1], 'nothing deleted');
  const forced = await cliPiped(['put', '--force', '-', url]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout.toString(), /0 uploaded, 0 unchanged, 0 zero, 2 deleted/);
  assert.deepEqual(await storedIndexes(url), []);
});

test('put is refused while a read-write mount holds the lease, naming it', async () => {
  const url = await volume('1M');
  const img = await makeImage('leased.img', BS, [0]);
  const bucket = testBucket(s3);
  try {
    const held = await LeaseHolder.acquire(bucket, parseS3Url(url), { holder: 'alice@host pid 1 on /mnt/v', ttlMs: 60_000, force: false, settleMs: 0 }, silentLogger);
    failsWith(await cli('put', img, url), 1, /mounted read-write by alice@host pid 1 on \/mnt\/v/);
    assert.deepEqual(await storedIndexes(url), [], 'nothing written');
    const g = await cli('get', url, path.join(dir, 'leased.out'));
    assert.equal(g.code, 0);
    assert.match(g.stderr, /warning: .* mounted read-write by alice/);
    await held.release();
    const p = await cli('put', img, url);
    assert.equal(p.code, 0, p.stderr);
    // The put released its lease: a mount can take it at once.
    await (await LeaseHolder.acquire(bucket, parseS3Url(url), { holder: 'bob', ttlMs: 60_000, force: false, settleMs: 0 }, silentLogger)).release();
  } finally {
    bucket.destroy();
  }
});

test('a put killed with -9 leaves its lease behind; the next put takes it over with one readable warning and sends only what is left', async () => {
  const url = await volume();
  const { img, bytes } = await randomImage('killed.img'); // 64 blocks
  const slow = proxy.addRule({ name: 'slow block PUT', method: 'PUT', key: /\/blocks\//, times: Infinity, action: { delay: 150 } });
  const child = spawn(process.execPath, [CLI, 'put', '--quiet', '--concurrency', '4', img, url], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint },
    stdio: 'ignore',
  });
  const closed = new Promise((resolve) => child.once('close', resolve));
  try {
    await until('some blocks sent', () => proxy.fired(slow) >= 8, 30_000);
    child.kill('SIGKILL');
    await closed;
  } finally {
    child.kill('SIGKILL');
    proxy.clearRules();
  }
  const stored = (await storedIndexes(url)).length;
  assert.ok(stored > 0 && stored < 64, `${stored} blocks stored before the kill`);
  const sentBefore = blockPuts();
  const again = await cli('put', '--quiet', img, url);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /^s3zmount: warning: taking over the write lease: the process that held it is gone \(holder=\S+ pid \d+ running "s3zmount put /m);
  assert.doesNotMatch(again.stderr, /"level"/, 'no JSON in a person\'s stderr, even through a pipe');
  const sent = blockPuts() - sentBefore;
  assert.ok(sent >= 64 - stored - 4 && sent <= 64 - stored, `${sent} block PUTs for the ${64 - stored} blocks left`);
  const out = path.join(dir, 'killed.out');
  assert.equal((await cli('get', '--quiet', url, out)).code, 0);
  assert.ok((await readFile(out)).equals(bytes), 'the image is whole');
});

test('a loop block device: put from it, get onto it (old data overwritten with zeros where the volume has none)', async (t) => {
  const backing = await makeImage('loop.img', 1024 * 1024, [2, 9]);
  let dev: string;
  try {
    dev = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  } catch {
    t.skip('losetup is not usable here (needs root and /dev/loop*)');
    return;
  }
  try {
    const url = await volume('1M');
    const p = await cli('put', dev, url);
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(await storedIndexes(url), [2, 9]);
    const expected = await readFile(backing);
    // Old data everywhere on the device, then get onto it: it must end up equal to the volume.
    await writeFile(backing, randomBytes(1024 * 1024));
    execFileSync('blockdev', ['--flushbufs', dev]);
    const g = await cli('get', url, dev);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /2 blocks fetched, 0 already there, 14 zeroed/);
    execFileSync('blockdev', ['--flushbufs', dev]);
    assert.ok((await readFile(dev)).equals(expected));
  } finally {
    execFileSync('losetup', ['-d', dev]);
  }
});
