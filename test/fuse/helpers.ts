// Shared helpers of the FUSE tests: FUSE availability (a missing /dev/fuse
// fails under CI=true, skips otherwise), mounting a MemFs under a fresh
// mkdtemp folder that is unmounted and removed after the test even when it
// fails, and running commands.
// Rule for tests: never spawn a child (run, runOk) while this process holds a
// file of its own mount open: exec closes it in the child, FLUSH reaches the
// mount, whose JS thread is blocked in spawn: a deadlock.
import assert from 'node:assert/strict';
import { execFile, type ExecFileOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { mount, type FuseSession, type MountOptions } from '../../dist/fuse/binding.js';
import { MemFs, type MemFsOptions } from './memfs.js';
import { until } from '../helpers/until.js';

/** True when FUSE tests can run; fails the test under CI when they cannot, else skips it. */
export function fuseAvailable(t: TestContext): boolean {
  if (existsSync('/dev/fuse')) return true;
  if (process.env['CI'] === 'true') assert.fail('/dev/fuse is missing: the FUSE tests must run in CI');
  t.skip('/dev/fuse is missing');
  return false;
}

export const isRoot = process.getuid?.() === 0;

export function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);
}

const cleanups = new WeakMap<TestContext, Array<() => unknown>>();

/** Runs `fn` after the test, whatever its outcome; cleanups run last-in first-out. */
export function defer(t: TestContext, fn: () => unknown): void {
  let list = cleanups.get(t);
  if (list === undefined) {
    const fns: Array<() => unknown> = [];
    list = fns;
    cleanups.set(t, fns);
    t.after(async () => {
      let first: unknown;
      for (let f = fns.pop(); f !== undefined; f = fns.pop()) {
        try {
          await f();
        } catch (err) {
          first ??= err;
        }
      }
      if (first !== undefined) throw first;
    });
  }
  list.push(fn);
}

/** A fresh folder removed after the test (after anything still mounted in it is detached). */
export async function tempDir(t: TestContext, prefix = 's3z-fuse-test-'): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), prefix));
  defer(t, async () => {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const mp = line.split(' ')[4];
      if (mp !== undefined && mp.startsWith(base + '/')) await run('fusermount3', ['-u', '-z', mp]);
    }
    await rm(base, { recursive: true, force: true });
  });
  return base;
}

export interface Mounted {
  fs: MemFs;
  session: FuseSession;
  dir: string;
  file: string;
  base: string;
}

/** Mounts a MemFs in a fresh folder; unmounted (and removed) after the test whatever happens. */
export async function mountMemFs(t: TestContext, options: MountOptions = {}, memOptions: MemFsOptions = {}): Promise<Mounted> {
  const base = await tempDir(t);
  const dir = join(base, 'mnt');
  await mkdir(dir);
  const fs = new MemFs(memOptions);
  const session = await mount(dir, options, fs.handlers);
  defer(t, () => session.unmount({ timeoutMs: 2000 }));
  return { fs, session, dir, file: join(dir, fs.fileName), base };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command; never rejects for a non-zero exit. */
export function run(cmd: string, args: string[], options: ExecFileOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' }, ...options }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
      resolve({
        code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        signal: e?.signal ?? null,
        stdout: String(stdout),
        stderr: String(stderr),
      });
    });
  });
}

/** Runs a command and fails the test if it does not exit 0. */
export async function runOk(cmd: string, args: string[], options: ExecFileOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r;
}

/** Polls `cond` until true, failing after `ms` (../helpers/until.ts). */
export function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  return until(what, cond, ms);
}

export const MIB = 1024 * 1024;
