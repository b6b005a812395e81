// ZFS test harness.
//
// - startZfsFuse(): Debian's zfs-fuse (pool version 23) in a private mount
//   namespace, so that several test files can each run their own daemon at
//   once (zfs-fuse allows one daemon per host: it uses /var/run/zfs/zfs_socket,
//   /var/lock/zfs/zfs_lock and /var/lib/zfs/zpool.cache). Commands run inside
//   it with nsenter; the daemon is stopped by pid.
// - zdbPath()/runZdb()/zdbCheck()/zdbCopyFile(): OpenZFS 2.3's userspace zdb,
//   extracted into <repo>/.cache/zdb by scripts/install-zdb.sh. It reads pools
//   read-only from their vdev files, on the host (no daemon, no namespace).
// - requireZfs(t): skip (outside CI) or fail (CI=true) when the tools are missing.
// - seeded content: deterministic pseudo-random bytes and their sha256.
//
// Usage:
//   test('x', async (t) => {
//     if (!requireZfs(t)) return;            // skip, or fail on CI=true
//     const defer = cleanupStack(t);          // LIFO cleanups
//     const dir = await tmpDir(defer);
//     const z = await startZfsFuse({ sharedDirs: [dir] });
//     defer(() => z.stop());                  // exports pools, kills by pid
//     await sparseFile(`${dir}/disk.img`, 1 << 30);
//     await z.zpool('create', '-m', `${dir}/mnt`, 'tank', `${dir}/disk.img`);
//     const sum = await z.writeSeededFile(`${dir}/mnt/f`, 1 << 20, 'seed');
//     await z.zfs('snapshot', 'tank@s1');
//     await z.zpool('export', 'tank');
//     assert.ok((await zdbCheck('tank', dir)).ok);
//     await zdbCopyFile('tank@s1', 'f', `${dir}/f.out`, dir);
//     assert.equal(await sha256File(`${dir}/f.out`), sum);
//   });
//
// Facts measured here (Debian 12, zfs-fuse 0.7.0-25+b1, zdb 2.3.2):
// - The host's mounts are private (no "shared:" peer group), so a namespace made
//   with `--propagation slave` does NOT see mounts the host makes later. A
//   directory passed in `sharedDirs` is bind-mounted onto itself and made shared
//   on the host first; mounts made under it afterwards (s3zmount's) appear
//   inside the namespace. The bind is undone by stop().
//   While a pool is imported, the host cannot unmount a FUSE mount under a
//   shared dir holding its vdev (EBUSY from the namespace's copy): export first.
// - zfs-fuse opens file vdevs O_RDWR without O_DIRECT (even with
//   --disable-block-cache), does its I/O with Linux AIO (io_submit), 4 KiB
//   aligned (ashift=12 by default for files; `zpool create -o ashift=9..13`),
//   up to 128 KiB per request, and calls fsync() on the vdev for cache
//   flushes. It never TRIMs (pool v23 has no `zpool trim`). A pool on a FUSE
//   file (s3backer --test) works as is.
// - zfs-fuse's `zpool get` has no -H/-o (`zpool list -H -o` and `zfs list -H -o` work).
// - zfs-fuse takes ~4.5 s to exit on SIGTERM even with no pool imported.
// - zdb only reads: it opens vdev files O_RDONLY|O_DIRECT to probe labels, then
//   O_RDONLY; the file is unchanged afterwards. -e -p DIR looks at every file
//   in DIR (non-recursive). Exit codes: -bcc 0 clean, 3 on a checksum error
//   ("Got error 52"), -r 52 (ECKSUM) on a bad block, 1 when the path is missing.
// - zdb -r wants the path relative to the dataset root ("dir/file", not
//   "/dir/file"); zdbCopyFile strips a leading '/'.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// ---------------------------------------------------------------------------
// tools

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

/** Absolute path of an executable found in PATH or the sbin directories, or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d !== ''), ...SBIN_DIRS];
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

function tool(name: string): string {
  const p = findTool(name);
  if (p === undefined) throw new Error(`${name} not found in PATH or ${SBIN_DIRS.join(':')}`);
  return p;
}

/** Where scripts/install-zdb.sh puts the zdb wrapper (or $S3Z_ZDB if set). */
export function zdbWrapperPath(): string {
  return process.env.S3Z_ZDB ?? path.join(REPO_ROOT, '.cache', 'zdb', 'zdb');
}

/** Path of OpenZFS's zdb wrapper; throws a clear message when it is not installed. */
export function zdbPath(): string {
  const p = zdbWrapperPath();
  try {
    accessSync(p, fsConstants.X_OK);
  } catch {
    throw new Error(`OpenZFS zdb not found at ${p}: run \`sudo scripts/install-zdb.sh\` (fetches zfsutils-linux from bookworm-backports into .cache/zdb, nothing installed system-wide)`);
  }
  return p;
}

let namespaceProbe: string | null | undefined;

/** Why ZFS tests cannot run here, or null when everything they need is present. */
export function zfsUnavailableReason(opts: { zdb?: boolean } = {}): string | null {
  const missing: string[] = [];
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) missing.push('root (zfs-fuse, mount namespaces and mounts need it)');
  try {
    accessSync('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch {
    missing.push('/dev/fuse');
  }
  for (const t of ['zfs-fuse', 'zpool', 'zfs', 'unshare', 'nsenter', 'setpriv', 'mount', 'umount']) {
    if (findTool(t) === undefined) missing.push(t + (t.startsWith('z') ? ' (apt-get install zfs-fuse)' : ' (util-linux)'));
  }
  if (opts.zdb !== false) {
    try {
      zdbPath();
    } catch {
      missing.push(`OpenZFS zdb at ${zdbWrapperPath()} (run sudo scripts/install-zdb.sh)`);
    }
  }
  if (missing.length === 0) {
    if (namespaceProbe === undefined) {
      const r = spawnSync(tool('unshare'), ['-m', '--propagation', 'slave', 'true'], { encoding: 'utf8', timeout: 10_000 });
      namespaceProbe = r.status === 0 ? null : `cannot create a mount namespace (unshare -m: ${(r.stderr || String(r.error ?? r.status)).trim()})`;
    }
    if (namespaceProbe !== null) missing.push(namespaceProbe);
  }
  return missing.length === 0 ? null : `missing: ${missing.join(', ')}`;
}

/**
 * Guard for ZFS tests. Returns true when they can run. Otherwise: with
 * CI=true it throws (the test FAILS: CI must have the tools); elsewhere it
 * marks the test skipped with the reason and returns false, and the caller
 * must return:  `if (!requireZfs(t)) return;`
 */
export function requireZfs(t: TestContext, opts: { zdb?: boolean } = {}): boolean {
  const reason = zfsUnavailableReason(opts);
  if (reason === null) return true;
  if (process.env.CI === 'true') throw new Error(`ZFS test cannot run on CI: ${reason}`);
  t.skip(`ZFS tools unavailable: ${reason}`);
  return false;
}

// ---------------------------------------------------------------------------
// processes

export interface RunOptions {
  /** Written to the command's stdin. */
  input?: string | Buffer;
  /** Killed (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

function collect(file: string, args: readonly string[], opts: RunOptions & { env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: '/', stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {
      // the command may exit without reading its input; its exit status tells
    });
    child.stdin.end(opts.input ?? '');
  });
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function failure(cmd: string, args: readonly string[], r: RunResult): Error {
  const how = r.signal !== null ? `killed by ${r.signal}` : `exit ${r.code}`;
  const stderr = cleanZdbOutput(r.stderr).trim();
  const stdout = r.stdout.toString('utf8').trim();
  return new Error(`${describe(cmd, args)} failed (${how})${stderr ? `: ${stderr}` : ''}${stdout ? `\nstdout: ${stdout.slice(-2000)}` : ''}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------
// zfs-fuse in a mount namespace

export interface ZfsFuseOptions {
  /**
   * Host directories (existing) whose later mounts must be visible inside the
   * namespace, e.g. the directory that will hold an s3zmount mount point. Each
   * is bind-mounted onto itself and made shared on the host until stop().
   * Mounts under them must be unmounted before stop() (which otherwise detaches
   * them lazily and throws).
   */
  sharedDirs?: readonly string[];
  /** ARC limit in MiB (zfs-fuse --max-arc-size, 16..16384); default 64. */
  maxArcMiB?: number;
  /** More zfs-fuse arguments (see `zfs-fuse --help`). */
  extraArgs?: readonly string[];
  /** How long to wait for the daemon to answer `zpool list`; default 30 s. */
  startTimeoutMs?: number;
}

export interface StopOptions {
  /** Export every imported pool first (default true); on failure, `export -f`. */
  exportPools?: boolean;
  /** How long to wait after SIGTERM before SIGKILL; default 20 s. */
  timeoutMs?: number;
}

export interface ZfsFuse {
  /** Pid of the zfs-fuse daemon (also the namespace's reference for nsenter). */
  readonly pid: number;
  /** Runs a command inside the namespace; returns stdout; throws with stderr on failure. */
  run(cmd: string, args?: readonly string[], opts?: RunOptions): Promise<string>;
  /** Like run() but never throws on a non-zero exit; stdout as a Buffer. */
  exec(cmd: string, args?: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** `zpool ...args` inside the namespace. */
  zpool(...args: string[]): Promise<string>;
  /** `zfs ...args` inside the namespace. */
  zfs(...args: string[]): Promise<string>;
  /** Names of the imported pools. */
  pools(): Promise<string[]>;
  /** sha256 (hex) of a file as seen inside the namespace. */
  sha256(file: string): Promise<string>;
  /** Reads a file as seen inside the namespace. */
  readFile(file: string): Promise<Buffer>;
  /** Writes data to a file inside the namespace (e.g. in a zfs-fuse dataset). */
  writeFile(file: string, data: string | Buffer): Promise<void>;
  /** Writes `size` seeded bytes (see seededChunks) to a file inside the namespace; returns their sha256. */
  writeSeededFile(file: string, size: number, seed: string | number): Promise<string>;
  /** True while the daemon process runs. */
  readonly running: boolean;
  /** What the daemon printed (last 64 KiB). */
  log(): string;
  /** Resolves when the daemon has exited (with its exit code / signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Crash simulation: SIGKILL now, nothing exported; waits for exit. Call stop() afterwards to clean up. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Exports the pools (by default), then ends the daemon by pid (SIGKILL once
   * every pool is exported, since nothing is left to write; otherwise SIGTERM,
   * then SIGKILL after timeoutMs), waits for it to exit and undoes sharedDirs.
   * Safe to call more than once. Throws (after cleaning up) if an export failed.
   */
  stop(opts?: StopOptions): Promise<void>;
}

// Private state for zfs-fuse: tmpfs over every path it shares with another
// daemon. Runs as `bash -c SCRIPT zfs-fuse-ns ZFS_FUSE ARGS...` after unshare.
const NAMESPACE_SCRIPT = `
set -eu
for d in /var/run/zfs /var/lock/zfs /var/lib/zfs /etc/zfs; do
  mkdir -p "$d"
  mount -t tmpfs -o mode=0755,size=16m s3z-zfs-fuse "$d"
done
exec "$@"
`;

export async function startZfsFuse(opts: ZfsFuseOptions = {}): Promise<ZfsFuse> {
  const reason = zfsUnavailableReason({ zdb: false });
  if (reason !== null) throw new Error(`cannot start zfs-fuse: ${reason}`);
  const zfsFuse = tool('zfs-fuse');
  const zpoolBin = tool('zpool');
  const zfsBin = tool('zfs');
  const nsenter = tool('nsenter');
  const mountBin = tool('mount');
  const umountBin = tool('umount');

  // host side: make the shared directories shared bind mounts
  const shared: string[] = [];
  const undoShared = async (): Promise<string[]> => {
    const problems: string[] = [];
    while (shared.length > 0) {
      const dir = shared.pop() as string;
      let r = await collect(umountBin, [dir], {});
      for (let i = 0; r.code !== 0 && i < 25; i++) {
        await sleep(200);
        r = await collect(umountBin, [dir], {});
      }
      if (r.code !== 0) {
        const below = submountsOf(dir);
        await collect(umountBin, ['-l', dir], {});
        problems.push(`shared dir ${dir} was still busy at stop() (${r.stderr.trim()}; mounts under it: ${below.join(', ') || 'none'}); detached lazily: unmount what is under it before stopping zfs-fuse`);
      }
    }
    return problems;
  };
  try {
    for (const d of opts.sharedDirs ?? []) {
      const dir = path.resolve(d);
      if (!existsSync(dir)) throw new Error(`sharedDirs: ${dir} does not exist`);
      let r = await collect(mountBin, ['--bind', dir, dir], {});
      if (r.code !== 0) throw failure('mount', ['--bind', dir, dir], r);
      shared.push(dir);
      r = await collect(mountBin, ['--make-shared', dir], {});
      if (r.code !== 0) throw failure('mount', ['--make-shared', dir], r);
    }
  } catch (e) {
    await undoShared();
    throw e;
  }

  const arc = String(opts.maxArcMiB ?? 64);
  const daemonArgs = [zfsFuse, '--no-daemon', '--no-kstat-mount', '--max-arc-size', arc, '--pidfile', '/var/run/zfs/zfs-fuse.pid', ...(opts.extraArgs ?? [])];
  // setpriv --pdeathsig: if this test process dies, the daemon gets SIGTERM
  // (the flag survives the execs: setpriv -> unshare -> bash -> zfs-fuse).
  const child: ChildProcess = spawn(
    tool('setpriv'),
    ['--pdeathsig', 'TERM', tool('unshare'), '-m', '--propagation', 'slave', 'bash', '-c', NAMESPACE_SCRIPT, 'zfs-fuse-ns', ...daemonArgs],
    { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logText = '';
  const append = (d: Buffer): void => {
    logText = (logText + d.toString('utf8')).slice(-65536);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
    child.on('error', (e) => {
      running = false;
      append(Buffer.from(`spawn error: ${e.message}\n`));
      resolve({ code: null, signal: null });
    });
  });
  const pid = child.pid;

  const exec = async (cmd: string, args: readonly string[] = [], ro: RunOptions = {}): Promise<RunResult> => {
    if (!running || pid === undefined) throw new Error(`zfs-fuse (pid ${pid}) is not running; cannot run ${describe(cmd, args)}. Its output:\n${logText}`);
    return collect(nsenter, ['-t', String(pid), '-m', '--', cmd, ...args], ro);
  };
  const run = async (cmd: string, args: readonly string[] = [], ro: RunOptions = {}): Promise<string> => {
    const r = await exec(cmd, args, ro);
    if (r.code !== 0) throw failure(cmd, args, r);
    return r.stdout.toString('utf8');
  };
  const pools = async (): Promise<string[]> =>
    (await run(zpoolBin, ['list', '-H', '-o', 'name'])).split('\n').map((s) => s.trim()).filter((s) => s !== '' && s !== 'no pools available');

  let stopping: Promise<void> | undefined;
  const waitExit = async (ms: number): Promise<boolean> => {
    if (!running) return true;
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    const ok = await Promise.race([exited.then(() => true as const), t]);
    clearTimeout(timer);
    return ok;
  };
  const signal = (sig: NodeJS.Signals): void => {
    if (running && pid !== undefined) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };

  const handle: ZfsFuse = {
    pid: pid ?? -1,
    run,
    exec,
    zpool: (...args) => run(zpoolBin, args),
    zfs: (...args) => run(zfsBin, args),
    pools,
    sha256: async (file) => {
      const out = await run('sha256sum', ['--', file]);
      const hex = out.split(/\s/)[0] ?? '';
      if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`sha256sum ${file}: unexpected output ${JSON.stringify(out)}`);
      return hex;
    },
    readFile: async (file) => {
      const r = await exec('cat', ['--', file]);
      if (r.code !== 0) throw failure('cat', [file], r);
      return r.stdout;
    },
    writeFile: async (file, data) => {
      await run('sh', ['-c', 'cat > "$1"', 'sh', file], { input: data });
    },
    writeSeededFile: async (file, size, seed) => {
      if (!running || pid === undefined) throw new Error('zfs-fuse is not running');
      const w = spawn(nsenter, ['-t', String(pid), '-m', '--', 'sh', '-c', 'cat > "$1"', 'sh', file], { cwd: '/', stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      w.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        w.on('error', reject);
        w.on('close', (code, sig) => resolve({ code, signal: sig }));
      });
      const hash = createHash('sha256');
      let broken = false;
      w.stdin.on('error', () => (broken = true));
      for (const chunk of seededChunks(seed, size)) {
        if (broken) break;
        hash.update(chunk);
        if (!w.stdin.write(chunk)) {
          await new Promise<void>((r) => {
            const go = (): void => {
              w.stdin.off('drain', go);
              w.stdin.off('close', go);
              r();
            };
            w.stdin.on('drain', go);
            w.stdin.on('close', go);
          });
        }
      }
      w.stdin.end();
      const r = await done;
      if (r.code !== 0 || broken) throw new Error(`writing ${file} in the zfs-fuse namespace failed (exit ${r.code ?? r.signal}): ${stderr.trim()}`);
      return hash.digest('hex');
    },
    get running() {
      return running;
    },
    log: () => logText,
    exited,
    kill: async (sig = 'SIGKILL') => {
      signal(sig);
      if (!(await waitExit(20_000))) throw new Error(`zfs-fuse pid ${pid} did not exit after ${sig}`);
    },
    stop: (so: StopOptions = {}) => {
      stopping ??= (async () => {
        const problems: string[] = [];
        let allExported = false;
        if (running && so.exportPools !== false) {
          allExported = true;
          let names: string[] = [];
          try {
            names = await pools();
          } catch (e) {
            allExported = false;
            problems.push(`zpool list: ${(e as Error).message}`);
          }
          for (const name of names) {
            try {
              await run(zpoolBin, ['export', name]);
            } catch (e) {
              problems.push(`zpool export ${name}: ${(e as Error).message}`);
              try {
                await run(zpoolBin, ['export', '-f', name]);
              } catch (e2) {
                allExported = false;
                problems.push(`zpool export -f ${name}: ${(e2 as Error).message}`);
              }
            }
          }
        }
        // With every pool exported nothing is left to write: SIGKILL spares
        // zfs-fuse's ~4.5 s of shutdown sleeps. Otherwise let it sync (SIGTERM).
        signal(allExported ? 'SIGKILL' : 'SIGTERM');
        if (!(await waitExit(so.timeoutMs ?? 20_000))) {
          problems.push(`zfs-fuse pid ${pid} still running ${so.timeoutMs ?? 20_000} ms after SIGTERM; sent SIGKILL`);
          signal('SIGKILL');
          if (!(await waitExit(10_000))) problems.push(`zfs-fuse pid ${pid} did not exit after SIGKILL`);
        }
        problems.push(...(await undoShared()));
        if (problems.length > 0) throw new Error(`stopping zfs-fuse: ${problems.join('; ')}\nzfs-fuse output:\n${logText}`);
      })();
      return stopping;
    },
  };

  // Ready when the namespace script has exec'd zfs-fuse (so the private tmpfs
  // are in place and nsenter cannot reach another daemon's socket) and the
  // daemon answers.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  let last = '';
  try {
    if (pid === undefined) throw new Error('spawn failed');
    for (;;) {
      if (!running) throw new Error(`zfs-fuse exited during start (${JSON.stringify(await exited)})`);
      let comm = '';
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        // exiting
      }
      if (comm === 'zfs-fuse') {
        const r = await exec(zpoolBin, ['list', '-H']);
        if (r.code === 0) break;
        last = r.stderr.trim();
      }
      if (Date.now() > deadline) throw new Error(`zfs-fuse did not answer within ${opts.startTimeoutMs ?? 30_000} ms (last zpool list: ${last})`);
      await sleep(50);
    }
  } catch (e) {
    await handle.stop({ exportPools: false, timeoutMs: 5_000 }).catch(() => undefined);
    throw new Error(`starting zfs-fuse: ${(e as Error).message}\nzfs-fuse output:\n${logText}`);
  }
  return handle;
}

function submountsOf(dir: string): string[] {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(dir + '/'));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------
// OpenZFS zdb (userspace, read-only)

/** Drops zdb's progress noise ("loading concrete vdev 0, metaslab 3 of 127 ..." with \r). */
export function cleanZdbOutput(s: string): string {
  return s
    .split(/[\r\n]/)
    .filter((l) => l.trim() !== '' && !/^loading (concrete )?vdev \d+/.test(l.trim()))
    .join('\n');
}

export interface ZdbResult {
  readonly code: number | null;
  readonly stdout: string;
  /** stderr without the progress noise */
  readonly stderr: string;
}

/** Runs zdb with args on the host. Throws on a non-zero exit unless allowFailure. */
export async function runZdb(args: readonly string[], opts: RunOptions & { allowFailure?: boolean } = {}): Promise<ZdbResult> {
  const zdb = zdbPath();
  const r = await collect(zdb, args, { timeoutMs: opts.timeoutMs ?? 600_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (r.code !== 0 && opts.allowFailure !== true) throw failure('zdb', args, r);
  return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: cleanZdbOutput(r.stderr) };
}

function searchArgs(vdevDirs: string | readonly string[]): string[] {
  const dirs = typeof vdevDirs === 'string' ? [vdevDirs] : vdevDirs;
  if (dirs.length === 0) throw new Error('zdb: at least one vdev directory is needed');
  return ['-e', ...dirs.flatMap((d) => ['-p', d])];
}

export interface ZdbCheckResult {
  /** true only if zdb exited 0, reported no read/checksum error and no leak. */
  readonly ok: boolean;
  readonly code: number | null;
  /** Lines that report a problem. */
  readonly problems: string[];
  /** "bp count" (blocks traversed), or undefined if zdb did not get that far. */
  readonly blocks: number | undefined;
  /** stdout + cleaned stderr, for messages. */
  readonly output: string;
}

/**
 * `zdb -e -p DIR... -bcc POOL`: traverses every block of an exported pool,
 * verifying every checksum (metadata and data) and that space maps match.
 * The pool must not be imported anywhere (export it first).
 */
export async function zdbCheck(pool: string, vdevDirs: string | readonly string[], opts: { timeoutMs?: number } = {}): Promise<ZdbCheckResult> {
  const r = await runZdb([...searchArgs(vdevDirs), '-bcc', pool], { allowFailure: true, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
  const output = `${r.stdout}\n${r.stderr}`.trim();
  const problems: string[] = [];
  if (r.code !== 0) problems.push(`zdb exited with ${r.code}`);
  for (const line of output.split('\n')) {
    const l = line.trim();
    // zdb.c: "zdb_blkptr_cb: Got error N reading <...>", "Error counts:",
    // "leaked space: ...", "block traversal size X != alloc Y (leaked|unreachable N)",
    // "space map refcount mismatch", "can't open", "internal error", ASSERTs.
    if (/Got error|Error counts|leaked space|\((leaked|unreachable) |!= alloc|mismatch|can't open|cannot open|internal error|ASSERT|failed/i.test(l)) problems.push(l);
  }
  if (!/No leaks \(block sum matches space maps exactly\)/.test(output)) problems.push('no "No leaks" line in zdb output');
  const m = /bp count:\s+(\d+)/.exec(output);
  const blocks = m?.[1] !== undefined ? Number(m[1]) : undefined;
  if (blocks === undefined) problems.push('no "bp count" in zdb output');
  return { ok: problems.length === 0, code: r.code, problems, blocks, output };
}

/**
 * `zdb -e -p DIR... -r DATASET PATH DEST`: copies a file out of a dataset or
 * snapshot (e.g. "tank/fs@s1") of an exported pool. PATH is relative to the
 * dataset's root; a leading '/' is removed. Throws if zdb fails (e.g. exit 52,
 * ECKSUM, when a block of the file is corrupt).
 */
export async function zdbCopyFile(dataset: string, file: string, dest: string, vdevDirs: string | readonly string[]): Promise<void> {
  const rel = file.replace(/^\/+/, '');
  await runZdb([...searchArgs(vdevDirs), '-r', dataset, rel, dest]);
}

// ---------------------------------------------------------------------------
// seeded content

const CHUNK = 1 << 20;

/**
 * Deterministic pseudo-random bytes for a seed: the AES-256-CTR keystream with
 * key sha256("s3zmount-test:" + seed), IV 0. Same seed, same bytes, on every
 * machine and Node version. Yields chunks of at most 1 MiB.
 */
export function* seededChunks(seed: string | number, size: number): Generator<Buffer> {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad size ${size}`);
  const key = createHash('sha256').update(`s3zmount-test:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(Math.min(CHUNK, size));
  for (let left = size; left > 0; ) {
    const n = Math.min(CHUNK, left);
    yield cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
    left -= n;
  }
}

/** All seeded bytes at once (for small sizes). */
export function seededBytes(seed: string | number, size: number): Buffer {
  return Buffer.concat([...seededChunks(seed, size)]);
}

/** sha256 (hex) of the seeded bytes, without keeping them. */
export function seededSha256(seed: string | number, size: number): string {
  const h = createHash('sha256');
  for (const c of seededChunks(seed, size)) h.update(c);
  return h.digest('hex');
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 (hex) of a host file. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Writes seeded bytes to a host file (created or truncated); returns their sha256. */
export async function writeSeededFile(file: string, size: number, seed: string | number): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'w');
  try {
    for (const c of seededChunks(seed, size)) {
      h.update(c);
      await fh.write(c);
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** Compares files' sha256 to what was expected; throws listing every mismatch. */
export async function expectSha256(files: Readonly<Record<string, string>>, hashOf: (file: string) => Promise<string> = sha256File): Promise<void> {
  const bad: string[] = [];
  for (const [file, want] of Object.entries(files)) {
    const got = await hashOf(file).catch((e: Error) => `error: ${e.message}`);
    if (got !== want) bad.push(`${file}: expected ${want}, got ${got}`);
  }
  if (bad.length > 0) throw new Error(`sha256 mismatch:\n${bad.join('\n')}`);
}

// ---------------------------------------------------------------------------
// test plumbing

/**
 * Cleanups for a test, run LIFO in one t.after hook (node:test runs its own
 * after hooks FIFO, which stops zfs-fuse before what it depends on is gone).
 * Every cleanup runs even if an earlier one throws; the errors are rethrown.
 */
export function cleanupStack(t: TestContext): (fn: () => unknown) => void {
  const fns: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    while (fns.length > 0) {
      const fn = fns.pop() as () => unknown;
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed: ${errors.map((e) => (e as Error).message).join('; ')}`);
  });
  return (fn) => {
    fns.push(fn);
  };
}

/** A fresh directory under the OS tmpdir; removed by the given cleanup stack. */
export async function tmpDir(defer: (fn: () => unknown) => void, prefix = 's3z-zfs-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Creates a sparse file of the given size (for a file vdev). */
export async function sparseFile(file: string, size: number): Promise<void> {
  const fh = await open(file, 'wx');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}
