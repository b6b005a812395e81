// Every bad input a user can type is one `s3zmount: ...` line on stderr, exit 2
// for usage and 1 for the rest, and nothing done: the built CLI against a real
// s3rver, with real FUSE mounts (and a read-only tmpfs) where the case needs them.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { CLI, startS3, type TestS3 } from '../helpers/s3.js';
import { runCli, failsWith } from '../helpers/cli.js';
import { isMounted, listVolume, mountVolume } from '../helpers/mount.js';
import { fuseAvailable, defer } from '../fuse/helpers.js';

let s3: TestS3;
let base: string;
before(async () => {
  s3 = await startS3();
  base = mkdtempSync(path.join(tmpdir(), 's3z-usage-'));
});
after(async () => {
  await s3?.stop();
  if (base !== undefined) rmSync(base, { recursive: true, force: true });
});

const cli = (...args: string[]) => runCli(args, s3.env);
let n = 0;
/** A fresh empty directory under the test's base. */
function freshDir(name: string): string {
  const d = path.join(base, `${name}-${n++}`);
  mkdirSync(d);
  return d;
}
async function newVolume(): Promise<string> {
  const url = s3.url();
  const c = await cli('create', url, '--size', '64M');
  assert.equal(c.code, 0, c.stderr);
  return url;
}

test('local-s3 on a port already taken, or on an address not of this machine: one line, exit 2, no stack trace', async () => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, resolve));
  try {
    const port = (taken.address() as net.AddressInfo).port;
    const dir = freshDir('local-s3');
    failsWith(await cli('local-s3', '--port', String(port), '--dir', dir), 2, new RegExp(`^s3zmount: port ${port} on 127\\.0\\.0\\.1 is already in use \\(pick another with --port, or 0 for any\\)$`));
    failsWith(await cli('local-s3', '--port', '0', '--address', '192.0.2.1', '--dir', dir), 2, /^s3zmount: --address 192\.0\.2\.1 is not an address of this machine$/);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test('local-s3: a file as --dir or a bad --bucket is one line; its server ends with the command, even one killed with -9', async (t: TestContext) => {
  const file = path.join(base, 'a-file');
  writeFileSync(file, '');
  failsWith(await cli('local-s3', '--port', '0', '--dir', file), 2, /^s3zmount: --dir .*a-file cannot be used as a data folder: it or a folder on its path is a file$/);
  failsWith(await cli('local-s3', '--port', '0', '--dir', path.join(file, 'sub')), 2, /cannot be used as a data folder/);
  failsWith(await cli('local-s3', '--port', '0', '--dir', freshDir('local-s3'), '--bucket', 'fine', 'Bad_Name'), 2, /^s3zmount: --bucket "Bad_Name" is not a valid bucket name/);

  // The command re-executes itself for s3rver; killing it must not leave that server behind.
  const dir = freshDir('local-s3');
  const child = spawn(process.execPath, [CLI, 'local-s3', '--port', '0', '--dir', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => {
    child.kill('SIGKILL');
    // Should the server outlive its command (the failure this test looks for), stop it by its pid.
    for (const pid of pidsWithArgument(dir)) process.kill(pid, 'SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`local-s3 ended early: ${out}`)));
  });
  assert.equal(await canConnect(port), true, 'the server answers while the command runs');
  child.kill('SIGKILL');
  let open = true;
  for (let i = 0; i < 50 && open; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    open = await canConnect(port);
  }
  assert.equal(open, false, 'the server is gone within 5 s of its command');
});

/** The pids of this machine's processes with `arg` as one of their arguments. */
function pidsWithArgument(arg: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(arg);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

test('an endpoint that is no S3 server (a web server answering 404 to everything) is said to be one, not "no volume there"', async (t: TestContext) => {
  const web = http.createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'text/html' });
    res.end('<html><body>Not Found</body></html>');
  });
  await new Promise<void>((resolve) => web.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.after(() => new Promise((resolve) => web.close(resolve)));
  const endpoint = `http://127.0.0.1:${(web.address() as net.AddressInfo).port}`;
  const env = { ...s3.env, AWS_ENDPOINT_URL_S3: endpoint };
  const notS3 = new RegExp(`${endpoint.replace(/\./g, '\\.')} answered 404 with no S3 error in it: it does not look like an S3 endpoint \\(check --endpoint or AWS_ENDPOINT_URL_S3\\)$`);
  for (const args of [['status', 's3://bucket/v'], ['create', 's3://bucket/v', '--size', '64M'], ['get', 's3://bucket/v', path.join(base, `not-s3-${n++}.img`)]]) {
    failsWith(await runCli(args, env), 1, notS3);
  }
});

test('parser errors are one line with exit 2, a "did you mean" on the same line', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['frob'], /^s3zmount: unknown command 'frob'; see "s3zmount --help"$/],
    [['creat', 's3://b/v'], /^s3zmount: unknown command 'creat' \(did you mean create\?\)$/],
    [['create', 's3://b/v'], /^s3zmount: create: required option '--size <size>' not specified; see "s3zmount create --help"$/],
    // The URL first: a bare "create" must not send the user to add --size, then the URL.
    [['create'], /^s3zmount: create: missing required argument 's3url'; see "s3zmount create --help"$/],
    [['help', 'nosuch'], /^s3zmount: unknown command 'nosuch'; see "s3zmount --help"$/],
    [['status'], /^s3zmount: status: missing required argument 's3url'/],
    [['status', 's3://b/v', 'extra'], /^s3zmount: status: too many arguments for 'status': expected 1 argument but got 2/],
    [['status', 's3://b/v', '--bogus'], /^s3zmount: status: unknown option '--bogus'/],
    [['mount', 's3://b/v', '/mnt', '--cache-dri', 'x'], /^s3zmount: mount: unknown option '--cache-dri' \(did you mean --cache-dir\?\)$/],
    [['create', 's3://b/v', '--size'], /^s3zmount: create: option '--size <size>' argument missing/],
    [['mount', '--read-only', '--overlay', 's3://b/v', '/mnt'], /^s3zmount: mount: option '--read-only' cannot be used with option '--overlay'/],
    [['--log-level', 'loud', 'status', 's3://b/v'], /^s3zmount: option '--log-level <level>' argument 'loud' is invalid: allowed choices are fatal, error/],
    [['unmount', '/mnt', '--timeout', 'soon'], /^s3zmount: unmount: option '--timeout <seconds>' argument 'soon' is invalid: expected a whole number of seconds/],
    [['unmount', '/mnt', '--timeout', '0'], /--timeout <seconds>.* is invalid/],
    [['verify', 's3://b/v', '--concurrency', '0'], /^s3zmount: --concurrency must be a whole number from 1 to 256$/],
    [['verify', 's3://b/v', '--concurrency', 'lots'], /--concurrency must be a whole number/],
    [['local-s3', '--port', '70000'], /^s3zmount: --port 70000 is not a port number$/],
    [['mount', 's3://b/v', '/mnt', '--cache-size', 'big'], /^s3zmount: --cache-size "big" is not a size/],
    [['--endpoint', 'not a url', 'status', 's3://b/v'], /^s3zmount: endpoint "not a url" is not a URL/],
    [['--endpoint', 'ftp://x', 'status', 's3://b/v'], /must start with http:\/\/ or https:\/\//],
    [['--region', '', 'status', 's3://b/v'], /^s3zmount: --region is empty/],
    [['status', 'test/v'], /^s3zmount: "test\/v" is not an s3:\/\/ URL/],
    [['status', 's3://Bad_Bucket/v'], /not a valid bucket name/],
  ];
  // A few at a time: each is a short-lived process, and the machine is shared.
  for (let i = 0; i < cases.length; i += 3) {
    const batch = cases.slice(i, i + 3);
    const results = await Promise.all(batch.map(([args]) => cli(...args)));
    batch.forEach(([args, pattern], j) => {
      const r = results[j];
      assert.ok(r);
      assert.doesNotThrow(() => failsWith(r, 2, pattern), `s3zmount ${args.join(' ')} -> ${r.code}: ${r.stderr}`);
    });
  }
});

test('no command prints the help on stderr with exit 2; --help and --version are exit 0', async () => {
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^Usage: s3zmount \[options\] \[command\]/);
  assert.match(none.stderr, /Exit codes/);
  const h = await runCli(['mount', '--help']);
  assert.equal(h.code, 0);
  assert.equal(h.stderr, '');
  assert.match(h.stdout, /--allow-nonempty/);
  const hm = await runCli(['help', 'mount']);
  assert.equal(hm.code, 0);
  assert.equal(hm.stdout, h.stdout, '"help mount" is "mount --help"');
  const v = await runCli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('volume commands: missing volume, existing volume, erase without --yes, wrong credentials', async () => {
  const url = s3.url();
  failsWith(await cli('status', url), 1, /no volume there \(make one with "s3zmount create/);
  failsWith(await cli('erase', url, '--yes'), 1, /no volume there/);
  assert.equal((await cli('create', url, '--size', '64M')).code, 0);
  failsWith(await cli('create', url, '--size', '64M'), 1, /already exists/);
  failsWith(await cli('erase', url), 2, /^s3zmount: erase deletes every block of .*: pass --yes to confirm$/);
  // (s3rver checks the key id, not the signature: a wrong id is the wrong credential it can see.)
  failsWith(await runCli(['status', url], { ...s3.env, AWS_ACCESS_KEY_ID: 'NOBODY' }), 1, /access denied .*InvalidAccessKeyId.*check the AWS credentials/);
  assert.equal((await cli('status', url)).code, 0, 'still there');
});

test('stdout that goes away (a reader that closed early) is no failure and no stack trace; a full disk under stdout is one line', async () => {
  const url = await newVolume();
  for (const args of [['status', url], ['status', '--json', url]]) {
    // stdout is a pipe whose reader is gone before the command prints (`... | true`).
    const bash = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" "$@" | true; exit \${PIPESTATUS[0]}`, 'bash', ...args], { env: { ...process.env, ...s3.env }, encoding: 'utf8' });
    assert.equal(bash.status, 0, `${args.join(' ')} | true: ${bash.stderr}`);
    assert.equal(bash.stderr, '', 'nothing on stderr');
  }
  const full = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" status "$1" > /dev/full`, 'bash', url], { env: { ...process.env, ...s3.env }, encoding: 'utf8' });
  assert.equal(full.status, 1);
  assert.match(full.stderr, /^s3zmount: stdout: ENOSPC: no space left on device, write\n$/);
});

test('stats, unmount and hydrate on a directory that is not a mount, or not there', async () => {
  const plain = freshDir('plain');
  // A file called "stats" does not make a directory a mount.
  writeFileSync(path.join(plain, 'stats'), 'not json');
  failsWith(await cli('stats', plain), 1, new RegExp(`^s3zmount: ${plain} is not mounted$`));
  failsWith(await cli('stats', path.join(base, 'nowhere')), 1, /nowhere does not exist$/);
  failsWith(await cli('unmount', plain), 1, new RegExp(`^s3zmount: ${plain} is not mounted$`));
  failsWith(await cli('unmount', path.join(base, 'nowhere')), 1, /nowhere does not exist$/);
  failsWith(await cli('hydrate', plain, '--wait'), 1, new RegExp(`^s3zmount: ${plain} is not mounted$`));
  failsWith(await cli('hydrate', path.join(base, 'nowhere')), 1, /nowhere does not exist$/);
});

test('mount: a bad URL is exit 2 from the background daemon too; a missing volume, bucket or wrong credentials exit 1', async (t) => {
  if (!fuseAvailable(t)) return;
  const dir = freshDir('mnt');
  const cacheDir = path.join(base, `cache-${n++}`);
  const mount = (url: string, env = s3.env) => runCli(['mount', url, dir, '--cache-dir', cacheDir, '--log-file', `${cacheDir}.log`], env);
  failsWith(await mount('s3:/nope'), 2, /^s3zmount: "s3:\/nope" is not an s3:\/\/ URL/);
  failsWith(await mount(s3.url()), 1, /no volume there/);
  failsWith(await mount('s3://no-such-bucket-s3z/v'), 1, /bucket does not exist/);
  const url = await newVolume();
  failsWith(await mount(url, { ...s3.env, AWS_ACCESS_KEY_ID: 'NOBODY' }), 1, /access denied .*credentials/);
  assert.equal(isMounted(dir), false);
});

test('mount: the mount point missing or a file, and an unwritable --log-file', async (t) => {
  if (!fuseAvailable(t)) return;
  const url = await newVolume();
  const cacheDir = path.join(base, `cache-${n++}`);
  const missing = path.join(base, 'no-such-dir');
  failsWith(await cli('mount', url, missing, '--cache-dir', cacheDir), 1, new RegExp(`^s3zmount: cannot mount on ${missing}: the mount point does not exist$`));
  const file = path.join(base, `file-${n++}`);
  writeFileSync(file, 'x');
  failsWith(await cli('mount', url, file, '--cache-dir', cacheDir), 1, /: the mount point is not a directory$/);
  const dir = freshDir('mnt');
  failsWith(await cli('mount', url, dir, '--cache-dir', cacheDir, '--log-file', '/nonexistent-s3z/x.log'), 1,
    /^s3zmount: cannot write the daemon log \/nonexistent-s3z\/x\.log: its directory does not exist; pass --log-file/);
  failsWith(await cli('mount', url, dir, '--cache-dir', cacheDir, '--log-file', base), 1, /cannot write the daemon log .*: it is a directory/);
  assert.equal(isMounted(dir), false);
});

/** Mounts `url` on a fresh dir with `cacheDir`; asserts the one line, and that S3 and the mount point are untouched. */
/** Root, to mount a filesystem for the test: required in CI, else the test is skipped. */
function asRoot(t: TestContext, what: string): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env['CI'] === 'true') assert.fail(`this test mounts ${what}: it must run as root in CI`);
  t.skip(`needs root to mount ${what}`);
  return false;
}

async function refusedCacheDir(url: string, cacheDir: string, pattern: RegExp): Promise<void> {
  const dir = freshDir('mnt');
  const before = await listVolume(s3, url);
  const r = await runCli(['mount', url, dir, '--cache-dir', cacheDir, '--log-file', path.join(base, `log-${n++}.log`)], s3.env, { timeoutMs: 30_000 });
  failsWith(r, 1, pattern);
  assert.equal(isMounted(dir), false);
  // Refused before the lease: not one object was written.
  assert.deepEqual(await listVolume(s3, url), before);
}

test('mount: a --cache-dir that is a file, or under one, is refused before the lease', async (t) => {
  if (!fuseAvailable(t)) return;
  const url = await newVolume();
  const file = path.join(base, `cachefile-${n++}`);
  writeFileSync(file, 'x');
  await refusedCacheDir(url, file, new RegExp(`^s3zmount: cache directory ${file} is not a directory; use --cache-dir to pick a writable directory$`));
  await refusedCacheDir(url, path.join(file, 'a', 'b'), new RegExp(`^s3zmount: cache directory ${file}/a/b cannot be made: ${file} is a file, not a directory; use --cache-dir`));
  // procfs refuses mkdir with ENOENT, where Node's own recursive mkdir would spin forever.
  await refusedCacheDir(url, '/proc/s3z-cache', /^s3zmount: cache directory \/proc\/s3z-cache cannot be made: the filesystem there does not allow it/);
});

test('mount: a --cache-dir on a read-only filesystem, or in an immutable directory, is refused before the lease', async (t) => {
  if (!fuseAvailable(t) || !asRoot(t, 'a read-only tmpfs')) return;
  const url = await newVolume();
  const ro = freshDir('ro');
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mount tmpfs: ${m.stderr}`);
  defer(t, () => spawnSync('umount', [ro]));
  await refusedCacheDir(url, ro, new RegExp(`^s3zmount: cache directory ${ro} cannot be written: its filesystem is read-only; use --cache-dir`));
  await refusedCacheDir(url, path.join(ro, 'cache'), new RegExp(`^s3zmount: cache directory ${ro}/cache cannot be made: its filesystem is read-only`));

  // The default cache dir (under XDG_CACHE_HOME) is checked too; the log dir under it first, in the parent.
  const dir = freshDir('mnt');
  const env = { ...s3.env, XDG_CACHE_HOME: path.join(ro, 'xdg') };
  const before = await listVolume(s3, url);
  failsWith(await runCli(['mount', url, dir], env), 1, /^s3zmount: cannot write the daemon log .*: its filesystem is read-only/);
  failsWith(await runCli(['mount', url, dir, '--log-file', path.join(base, `log-${n++}.log`)], env), 1,
    new RegExp(`^s3zmount: cache directory ${ro}/xdg/s3zmount cannot be made: its filesystem is read-only`));
  assert.deepEqual(await listVolume(s3, url), before, 'refused before the lease');

  const chattr = spawnSync('chattr', ['--help']);
  if (chattr.error !== undefined) {
    t.diagnostic('chattr is not installed: the immutable case is not tried');
    return;
  }
  const imm = freshDir('immutable');
  const c = spawnSync('chattr', ['+i', imm], { encoding: 'utf8' });
  if (c.status !== 0) {
    t.diagnostic(`chattr +i is not supported here (${c.stderr.trim()}): the immutable case is not tried`);
    return;
  }
  defer(t, () => spawnSync('chattr', ['-i', imm]));
  await refusedCacheDir(url, imm, new RegExp(`^s3zmount: cache directory ${imm} cannot be written: no permission`));
  await refusedCacheDir(url, path.join(imm, 'c'), new RegExp(`^s3zmount: cache directory ${imm}/c cannot be made: no permission`));
});

test('mount: a --cache-dir on a filesystem that cannot punch holes (ramfs) is refused before the lease, and nothing is left of it', async (t) => {
  if (!fuseAvailable(t) || !asRoot(t, 'a ramfs')) return;
  const url = await newVolume();
  const rf = freshDir('ramfs');
  const m = spawnSync('mount', ['-t', 'ramfs', 'ramfs', rf], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mount ramfs: ${m.stderr}`);
  defer(t, () => spawnSync('umount', [rf]));
  const cacheDir = path.join(rf, 'cache');
  await refusedCacheDir(url, cacheDir, new RegExp(
    `^s3zmount: cache directory ${cacheDir} cannot hold the cache: its filesystem cannot free part of a file, which the cache needs for new and evicted blocks; use --cache-dir to pick a directory on ext4, xfs, btrfs or tmpfs$`));
  assert.deepEqual(readdirSync(rf), [], 'the cache dir it made is gone again, the probe file with it');
  // One that was there before is kept, and left as it was.
  mkdirSync(cacheDir);
  await refusedCacheDir(url, cacheDir, /cannot hold the cache: its filesystem cannot free part of a file/);
  assert.deepEqual(readdirSync(cacheDir), [], 'the probe file is gone');
});

test('unmount, hydrate and stats trust only an s3zmount mount: a stats file on another mount names no pid to signal', async (t) => {
  if (!asRoot(t, 'a ramfs')) return;
  const rf = freshDir('fake-mount');
  const m = spawnSync('mount', ['-t', 'ramfs', 'ramfs', rf], { encoding: 'utf8' });
  assert.equal(m.status, 0, `mount ramfs: ${m.stderr}`);
  defer(t, () => spawnSync('umount', [rf]));
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
  defer(t, () => bystander.kill('SIGKILL'));
  writeFileSync(path.join(rf, 'stats'), JSON.stringify({ pid: bystander.pid, volume: 's3://b/v', hydration: { runs: 0 } }));
  for (const args of [['unmount', rf], ['hydrate', rf], ['stats', rf]]) {
    failsWith(await cli(...args), 1, new RegExp(`^s3zmount: ${rf}: not an s3zmount mount \\(a ramfs mount\\)$`));
  }
  assert.equal(bystander.exitCode, null, 'the process named in the file was not signalled');
  assert.equal(bystander.signalCode, null, 'the process named in the file was not signalled');
});

test('mount refuses a non-empty directory; --allow-nonempty mounts over it and the files come back after', async (t) => {
  if (!fuseAvailable(t)) return;
  const url = await newVolume();
  const dir = freshDir('full');
  for (const f of ['a', 'b', 'c', 'd']) writeFileSync(path.join(dir, f), f);
  const cacheDir = path.join(base, `cache-${n++}`);
  const before = await listVolume(s3, url);
  failsWith(await cli('mount', url, dir, '--cache-dir', cacheDir), 1,
    new RegExp(`^s3zmount: cannot mount on ${dir}: the directory is not empty \\(it holds a, b, c and 1 more\\) and the mount would hide that; pass --allow-nonempty to mount over it$`));
  assert.equal(isMounted(dir), false);
  assert.deepEqual(await listVolume(s3, url), before, 'refused before the lease');

  const m = await mountVolume({ env: s3.env, url, dir, cacheDir, extraArgs: ['--allow-nonempty'] });
  defer(t, () => m.cleanup());
  assert.equal(isMounted(dir), true);
  assert.deepEqual(readdirSync(dir).sort(), ['disk', 'stats']);
  await m.unmount();
  assert.deepEqual(readdirSync(dir).sort(), ['a', 'b', 'c', 'd']);
  assert.ok(!existsSync(path.join(dir, 'disk')));
});

test('mount --foreground: Ctrl-C uploads, unmounts and says so, exit 0', async (t) => {
  if (!fuseAvailable(t)) return;
  const url = await newVolume();
  const dir = freshDir('fg');
  const child = spawn(process.execPath, [CLI, 'mount', url, dir, '--cache-dir', path.join(base, `cache-${n++}`), '--foreground'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...s3.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  defer(t, () => {
    child.kill('SIGKILL');
    spawnSync('fusermount3', ['-u', '-z', dir]);
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('\n')) resolve();
    });
    void exited.then(() => reject(new Error(`mount ended early: ${stdout} ${stderr}`)));
  });
  assert.match(stdout, new RegExp(`^mounted ${url} on ${dir} \\(read-write\\); Ctrl-C or "s3zmount unmount ${dir}" to unmount\\n$`));
  writeFileSync(path.join(dir, 'disk'), Buffer.alloc(4096, 7), { flag: 'r+' });
  child.kill('SIGINT');
  assert.equal(await exited, 0, stderr);
  // At most the note of a stop that took a while (a loaded machine); no warning.
  assert.match(stderr, /^(s3zmount: unmounting: waiting for S3[^\n]*\n)?$/);
  assert.match(stdout, new RegExp(`\\nunmounted ${url} from ${dir}\\n$`));
  assert.equal(isMounted(dir), false);
  assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 1, 'the write is in S3');
});

test('mount --foreground whose terminal closes (SIGHUP) stops as unmount would: the write in S3, the lease free, no broken mount', async (t) => {
  if (!fuseAvailable(t)) return;
  const url = await newVolume();
  const dir = freshDir('hup');
  const argv = [process.execPath, CLI, 'mount', url, dir, '--cache-dir', path.join(base, `cache-${n++}`), '--foreground'];
  // On a pseudo-terminal of util-linux's `script`: killing it hangs the terminal up.
  const term = spawn('script', ['-qec', argv.map((a) => `'${a}'`).join(' '), '/dev/null'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...s3.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  defer(t, () => {
    term.kill('SIGKILL');
    for (const pid of pidsWithArgument(dir)) process.kill(pid, 'SIGKILL');
    spawnSync('fusermount3', ['-u', '-z', dir]);
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    term.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('mounted ')) resolve();
    });
    term.on('close', () => reject(new Error(`mount ended early: ${out}`)));
  });
  writeFileSync(path.join(dir, 'disk'), Buffer.alloc(4096, 9), { flag: 'r+' });
  term.kill('SIGTERM');
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    gone = pidsWithArgument(dir).length === 0;
  }
  assert.ok(gone, 'the daemon ended');
  assert.equal(isMounted(dir), false, 'no mount left behind');
  assert.equal((await listVolume(s3, url)).filter((o) => o.key.includes('/blocks/')).length, 1, 'the write is in S3');
  assert.match((await cli('status', url)).stdout, /lease +free/);
});
