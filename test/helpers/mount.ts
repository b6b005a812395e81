// s3zmount mounts for tests: `mount` through the CLI (background mode, as a
// user runs it), the daemon's pid and stats, and an unmount that always leaves
// nothing behind: `unmount` first; if that fails, SIGKILL the daemon by pid and
// detach the FUSE mount (fusermount3 -u, then lazily).
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { S3Client, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { runCli } from './cli.js';
import type { TestS3 } from './s3.js';

export type MountMode = 'read-write' | 'read-only' | 'overlay';

export interface MountOptions {
  /** CLI environment: endpoint and credentials (TestS3.env). */
  readonly env: Record<string, string>;
  readonly url: string;
  /** An existing empty directory. */
  readonly dir: string;
  readonly mode?: MountMode;
  /** --cache-dir (the product's default is under ~/.cache otherwise). */
  readonly cacheDir?: string;
  /** --log-file; default <cacheDir>.log when cacheDir is given. */
  readonly logFile?: string;
  /** --log-level; default info. */
  readonly logLevel?: string;
  readonly extraArgs?: readonly string[];
  readonly timeoutMs?: number;
}

/** The parts of <dir>/stats the tests read. */
export interface MountStats {
  pid: number;
  volume: string;
  mode: string;
  s3: { get: number; put: number; delete: number; list: number; head: number; bytesIn: number; bytesOut: number; retries: number; stale: number; corrupt: number };
  cache: { hit: number; miss: number; blocks: number; bytes: number; [k: string]: number };
  dirtyBlocks: number;
  inflight: number;
  [k: string]: unknown;
}

export interface Mounted {
  readonly dir: string;
  readonly pid: number;
  readonly logFile: string | undefined;
  /** How long `mount` took, ms. */
  readonly mountMs: number;
  /** What `mount` printed on stderr. */
  readonly mountStderr: string;
  stats(): Promise<MountStats>;
  /** The daemon's log (last 64 KiB), or '' when there is none. */
  log(): string;
  /** True while the daemon process lives. */
  alive(): boolean;
  /**
   * `s3zmount unmount`; on failure (or timeout) kills the daemon and detaches
   * the mount, then throws with what the CLI said and the daemon's log.
   * Resolves to how long `unmount` took. Safe to call twice (second is a no-op).
   */
  unmount(opts?: { timeoutMs?: number }): Promise<number>;
  /** Cleanup for a failed test: unmount, and never throw for a mount that is already gone. */
  cleanup(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tail(s: string, n = 65536): string {
  return s.length > n ? s.slice(-n) : s;
}

/** Mount points currently in /proc/self/mountinfo (unescaped). */
export function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export function isMounted(dir: string): boolean {
  const abs = path.resolve(dir);
  return mountPoints().includes(abs);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie is gone for our purposes
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Pids of processes whose command line is `... cli.js mount ... <dir> ...` for exactly this dir. */
export function daemonPidsFor(dir: string): number[] {
  const abs = path.resolve(dir);
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('cli.js')) && argv.includes('mount') && argv.some((a) => a === abs || a === dir)) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}

function run(cmd: string, args: readonly string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', (e) => resolve({ code: null, out: e.message }));
    c.on('close', (code) => resolve({ code, out: out.trim() }));
  });
}

/**
 * Last resort: SIGKILL the daemon(s) of this dir by pid, then detach the
 * mount. Returns what it did, for messages.
 */
export async function forceUnmount(dir: string, knownPid?: number): Promise<string[]> {
  const did: string[] = [];
  // The known pid first: scanning every /proc/*/cmdline can block (a process stuck
  // on some other FUSE mount holds its mm lock), so only when the pid is unknown.
  const pids = new Set(knownPid !== undefined && knownPid > 0 ? (pidAlive(knownPid) ? [knownPid] : []) : daemonPidsFor(dir));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      did.push(`kill -9 ${pid}`);
    } catch {
      // gone
    }
  }
  for (const pid of pids) for (let i = 0; i < 100 && pidAlive(pid); i++) await sleep(50);
  if (isMounted(dir)) {
    let r = await run('fusermount3', ['-u', dir]);
    did.push(`fusermount3 -u: ${r.code}${r.out ? ` ${r.out}` : ''}`);
    if (isMounted(dir)) {
      r = await run('fusermount3', ['-uz', dir]);
      did.push(`fusermount3 -uz: ${r.code}${r.out ? ` ${r.out}` : ''}`);
    }
    if (isMounted(dir)) {
      r = await run('umount', ['-l', dir]);
      did.push(`umount -l: ${r.code}${r.out ? ` ${r.out}` : ''}`);
    }
  }
  return did;
}

/** `s3zmount mount` in the background; resolves once it is mounted. */
export async function mountVolume(opts: MountOptions): Promise<Mounted> {
  const dir = path.resolve(opts.dir);
  const mode = opts.mode ?? 'read-write';
  const logFile = opts.logFile ?? (opts.cacheDir !== undefined ? `${path.resolve(opts.cacheDir)}.log` : undefined);
  const args = [
    '--log-level', opts.logLevel ?? 'info',
    'mount', opts.url, dir,
    ...(mode === 'read-only' ? ['--read-only'] : mode === 'overlay' ? ['--overlay'] : []),
    ...(opts.cacheDir !== undefined ? ['--cache-dir', opts.cacheDir] : []),
    ...(logFile !== undefined ? ['--log-file', logFile] : []),
    ...(opts.extraArgs ?? []),
  ];
  const readLog = (): string => {
    if (logFile === undefined) return '';
    try {
      return tail(readFileSync(logFile, 'utf8'));
    } catch {
      return '';
    }
  };
  const r = await runCli(args, opts.env, { timeoutMs: opts.timeoutMs ?? 60_000 });
  if (r.code !== 0) {
    const did = await forceUnmount(dir);
    throw new Error(`s3zmount ${args.join(' ')} exited ${r.code} after ${r.ms} ms: ${r.stderr.trim()}${did.length ? `\ncleanup: ${did.join('; ')}` : ''}\ndaemon log:\n${readLog()}`);
  }
  const statsOf = async (): Promise<MountStats> => JSON.parse(await readFile(path.join(dir, 'stats'), 'utf8')) as MountStats;
  let pid: number;
  try {
    pid = (await statsOf()).pid;
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid in stats`);
  } catch (e) {
    const did = await forceUnmount(dir);
    throw new Error(`mounted ${dir} but its stats are unreadable (${(e as Error).message}); cleanup: ${did.join('; ')}\ndaemon log:\n${readLog()}`);
  }

  // The daemon is detached and outlives this process: if the test process dies
  // without running its cleanups (killed, or its runner is), a watchdog kills the
  // daemon and detaches the mount. Stopped once the mount is gone.
  const dog = spawn(
    'sh',
    [
      '-c',
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
        'if grep -qF -- "$3" "/proc/$2/cmdline" 2>/dev/null; then kill -9 "$2"; sleep 0.5; fi; ' +
        'if grep -qF -- " $3 " /proc/self/mountinfo; then fusermount3 -uz "$3" 2>/dev/null || umount -l "$3"; fi',
      's3z-test-mount-watchdog',
      String(process.pid),
      String(pid),
      dir,
    ],
    { detached: true, stdio: 'ignore' },
  );
  dog.unref();
  const stopDog = (): void => {
    if (dog.pid !== undefined && dog.exitCode === null && dog.signalCode === null) {
      try {
        process.kill(-dog.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  };

  let done: Promise<number> | undefined;
  const unmount = (uo: { timeoutMs?: number } = {}): Promise<number> => {
    done ??= (async () => {
      try {
        return await unmountOnce(uo);
      } finally {
        if (!isMounted(dir) && !pidAlive(pid)) stopDog();
      }
    })();
    return done;
  };
  const unmountOnce = async (uo: { timeoutMs?: number }): Promise<number> => {
    const started = Date.now();
    if (!isMounted(dir) && !pidAlive(pid)) throw new Error(`${dir} was no longer mounted and its daemon (pid ${pid}) was gone before unmount\ndaemon log:\n${readLog()}`);
    const u = await runCli(['unmount', dir, '--timeout', String(Math.ceil((uo.timeoutMs ?? 120_000) / 1000))], opts.env, { timeoutMs: (uo.timeoutMs ?? 120_000) + 10_000 });
    const ms = Date.now() - started;
    // `unmount` waits for the daemon to exit; allow a moment for the pid to be reaped
    for (let i = 0; i < 40 && pidAlive(pid); i++) await sleep(50);
    const stillMounted = isMounted(dir);
    const stillAlive = pidAlive(pid);
    if (u.code !== 0 || stillMounted || stillAlive) {
      const did = await forceUnmount(dir, pid);
      throw new Error(
        `s3zmount unmount ${dir} exited ${u.code} after ${ms} ms (still mounted: ${stillMounted}, daemon ${pid} alive: ${stillAlive}): ${u.stderr.trim()}` +
          `\ncleanup: ${did.join('; ') || 'nothing to do'}\ndaemon log:\n${readLog()}`,
      );
    }
    return ms;
  };

  return {
    dir,
    pid,
    logFile,
    mountMs: r.ms,
    mountStderr: r.stderr,
    stats: statsOf,
    log: readLog,
    alive: () => pidAlive(pid),
    unmount,
    cleanup: async () => {
      try {
        if (done !== undefined) {
          // unmount() was called already and its caller saw how it went; just make sure nothing is left
          await done.catch(() => undefined);
          if (isMounted(dir) || pidAlive(pid)) {
            const did = await forceUnmount(dir, pid);
            throw new Error(`${dir} still mounted after unmount; forced: ${did.join('; ')}`);
          }
          return;
        }
        if (!isMounted(dir) && !pidAlive(pid)) return;
        await unmount(); // throws (after forcing) if it failed
      } finally {
        if (!isMounted(dir) && !pidAlive(pid)) stopDog();
      }
    },
  };
}

// ---------------------------------------------------------------------------
// raw S3 listing (to prove what a mount did or did not change)

export interface ListedObject {
  readonly key: string;
  readonly etag: string;
  readonly size: number;
  readonly lastModified: string;
}

/** An SDK client for the test server (path-style, no aws-chunked bodies). */
export function rawClient(s3: TestS3): S3Client {
  // The SDK's NodeVersionSupportWarning on Node 20 is noise in test output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const id = s3.env.AWS_ACCESS_KEY_ID;
  const secret = s3.env.AWS_SECRET_ACCESS_KEY;
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(id !== undefined && secret !== undefined
      ? { credentials: { accessKeyId: id, secretAccessKey: secret, ...(s3.env.AWS_SESSION_TOKEN !== undefined ? { sessionToken: s3.env.AWS_SESSION_TOKEN } : {}) } }
      : {}),
  });
}

/** Every object under the volume's prefix (s3://bucket/prefix), sorted by key. */
export async function listVolume(s3: TestS3, url: string): Promise<ListedObject[]> {
  const m = /^s3:\/\/([^/]+)\/(.+?)\/*$/.exec(url);
  if (m === null) throw new Error(`not an s3 url with a prefix: ${url}`);
  const bucket = m[1] as string;
  const prefix = `${m[2] as string}/`;
  const client = rawClient(s3);
  const out: ListedObject[] = [];
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        out.push({ key: o.Key ?? '', etag: o.ETag ?? '', size: o.Size ?? -1, lastModified: o.LastModified?.toISOString() ?? '' });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  } finally {
    client.destroy();
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
