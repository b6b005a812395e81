// Processes for the benchmark: running commands with a time limit, children we
// own (stopped by pid), mount-table checks, /proc readings, and one cleanup
// stack that runs LIFO at the end, on failure and on SIGINT/SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

// Recent @aws-sdk releases warn at every start on Node 20 (DESIGN §6); that one
// warning is noise here. This module is imported before the SDK.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const text = `${typeof warning === 'string' ? warning : warning?.message} ${JSON.stringify(rest)} ${warning?.name ?? ''}`;
  if (/NodeVersionSupportWarning/.test(text)) return;
  emitWarning(warning, ...rest);
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const logStart = Date.now();
export function log(...a) {
  const t = ((Date.now() - logStart) / 1000).toFixed(1).padStart(6);
  console.error(`[bench ${t}s]`, ...a);
}

// ---------------------------------------------------------------------------
// cleanup stack

const cleanups = [];
let cleaning;

/** Registers a cleanup; returns a function that runs it now (once) and unregisters it. */
export function defer(name, fn) {
  const entry = { name, fn, done: false };
  cleanups.push(entry);
  return async () => {
    if (entry.done) return;
    entry.done = true;
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
    await fn();
  };
}

/** Runs every registered cleanup, LIFO; every one runs even if another throws. Returns the errors. */
export function runCleanups() {
  cleaning ??= (async () => {
    const errors = [];
    while (cleanups.length > 0) {
      const entry = cleanups.pop();
      if (entry.done) continue;
      entry.done = true;
      try {
        await entry.fn();
      } catch (e) {
        errors.push(`${entry.name}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return errors;
  })();
  return cleaning;
}

/** Children still running, for the last-resort kill at process exit. */
const liveChildren = new Set();

/** Registers a child process for the last-resort SIGKILL at exit (until it exits). */
export function trackChild(child) {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

export function installSignalHandlers() {
  let signalled = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (signalled) return;
      signalled = true;
      log(`${sig}: cleaning up`);
      const hard = setTimeout(() => {
        log('cleanup took too long; exiting');
        process.exit(130);
      }, 120_000);
      hard.unref();
      runCleanups().then((errors) => {
        for (const e of errors) log(`cleanup: ${e}`);
        process.exit(130);
      });
    });
  }
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

// ---------------------------------------------------------------------------
// commands

/**
 * Runs a command to completion. Resolves { code, signal, stdout, stderr, ms };
 * rejects only when it cannot start. SIGKILL after timeoutMs.
 */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    liveChildren.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** Like run() but throws unless the exit code is 0. */
export async function runOk(cmd, args, opts = {}) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const how = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
    throw new Error(`${cmd} ${args.join(' ')} failed (${how}): ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  }
  return r;
}

/**
 * Starts a long-lived child we own. Output is kept (last 64 KiB) for messages.
 * Returns { child, pid, output(), exited (promise), stop(timeoutMs) }.
 */
export function startChild(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  liveChildren.add(child);
  let out = '';
  const keep = (d) => {
    out += d;
    if (out.length > 65536) out = out.slice(-65536);
    opts.onData?.(out);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    });
    child.on('error', (e) => {
      liveChildren.delete(child);
      out += `\nspawn error: ${e.message}`;
      resolve({ code: null, signal: null, error: e });
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid: child.pid,
    output: () => out,
    exited,
    running,
    /** SIGTERM (or `signal`), SIGKILL after timeoutMs; resolves when it has exited. */
    async stop(timeoutMs = 10_000, signal = 'SIGTERM') {
      if (!running()) return exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

// ---------------------------------------------------------------------------
// /proc and the mount table

export function mountPoints() {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8))));
}

export const isMounted = (dir) => mountPoints().includes(dir);

export function pidAlive(pid) {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** VmHWM (peak RSS) of a process in bytes, or undefined. */
export function vmHWM(pid) {
  return memStatus(pid)?.hwm;
}

/** Memory of a process from /proc/PID/status, in bytes: { hwm, rss, anon, file, shmem }, or undefined. */
export function memStatus(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const f = (k) => {
      const m = new RegExp(`${k}:\\s+(\\d+) kB`).exec(s);
      return m ? Number(m[1]) * 1024 : undefined;
    };
    return { hwm: f('VmHWM'), rss: f('VmRSS'), anon: f('RssAnon'), file: f('RssFile'), shmem: f('RssShmem') };
  } catch {
    return undefined;
  }
}

/**
 * Writes the machine's dirty page cache to disk before a timed phase that writes or
 * fetches in bulk, so that it does not pay for the disk writes of the phase before it
 * (s3rver's objects stay dirty for up to 30 s, vm.dirty_expire_centisecs, and are then
 * written back while the next phase runs). Not before the cold reads: after a sync,
 * drop_caches would also evict s3rver's objects, which the raw GET ceiling reads from
 * memory. Every tool and ceiling gets the same. Logs what was dirty and how long the
 * sync took, when it was much.
 */
export function settle(what) {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const kB = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(meminfo)?.[1] ?? 0);
  const dirtyMiB = (kB('Dirty') + kB('Writeback')) / 1024;
  const t = performance.now();
  spawnSync('sync', [], { stdio: 'ignore' });
  const syncMs = performance.now() - t;
  if (dirtyMiB >= 64) log(`settle before ${what}: ${dirtyMiB.toFixed(0)} MiB dirty, sync ${syncMs.toFixed(0)} ms`);
}

export function dropCaches() {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** Detaches a FUSE mount: fusermount3 -u, then lazily. */
export function detach(dir) {
  if (!isMounted(dir)) return;
  spawnSync('fusermount3', ['-u', dir], { stdio: 'ignore' });
  if (isMounted(dir)) spawnSync('fusermount3', ['-uz', dir], { stdio: 'ignore' });
  if (isMounted(dir)) spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
}

/** Waits until pred() or the deadline; returns pred()'s last value. */
export async function waitFor(pred, timeoutMs, stepMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v || Date.now() > deadline) return v;
    await sleep(stepMs);
  }
}

export function machine() {
  const mem = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  const nproc = spawnSync('nproc', [], { encoding: 'utf8' }).stdout.trim();
  const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
  let os = '';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    // unknown
  }
  const ver = (cmd, args, re) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return re.exec(`${r.stdout}${r.stderr}`)?.[1] ?? '?';
  };
  return {
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    nproc,
    memGiB: mem ? Number(mem[1]) / 1048576 : undefined,
    cpu: cpu?.[1]?.trim() ?? '?',
    kernel,
    os,
    node: process.version,
    s3backer: ver('s3backer', ['--version'], /s3backer version (\S+)/),
    fio: ver('fio', ['--version'], /fio-(\S+)/),
  };
}
