// Whether a directory can hold a volume's local cache (LMDB, the write-back journal
// and the blocks' slab files). Checked by the daemon before it takes the lease or
// touches S3, so a bad --cache-dir costs nothing and is one sentence naming the path
// and what to do, not a raw errno from mkdir or LMDB halfway through the mount, nor
// EIO at the first write to a new block (the slab files need holes punched: a new
// block's range is made zeros that way, and eviction frees space that way).
import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, rmdir, stat } from 'node:fs/promises';
import { constants, homedir } from 'node:os';
import path from 'node:path';
import { S3zError } from '../errors.js';
import { fileNative } from '../util/file-native.js';

const ADVICE = 'use --cache-dir to pick a writable directory';

/** Where caches and logs go without --cache-dir or --log-file: $XDG_CACHE_HOME/s3zmount, or ~/.cache/s3zmount. */
export function defaultCacheRoot(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 's3zmount');
}

/**
 * Makes `dir` if needed and proves a file can be written in it; resolves to its absolute
 * path. A directory it made for a cache dir it then refuses is removed again.
 */
export async function checkCacheDir(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  let made: string[];
  try {
    made = await makeDirs(abs);
  } catch (err) {
    throw await mkdirError(abs, err);
  }
  try {
    await checkMade(abs);
  } catch (err) {
    // Deepest first; rmdir removes none that is not empty.
    for (const d of made.reverse()) await rmdir(d).catch(() => undefined);
    throw err;
  }
  return abs;
}

async function checkMade(abs: string): Promise<void> {
  const st = await stat(abs).catch((err: unknown) => {
    throw cacheDirError(abs, `cannot be read (${codeOf(err)})`, err);
  });
  if (!st.isDirectory()) throw cacheDirError(abs, `is not a directory; ${ADVICE}`);
  // As root, access(W_OK) says yes to an immutable directory: only a real write tells.
  const probe = path.join(abs, `.s3zmount-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    try {
      const fh = await open(probe, 'wx', 0o600);
      try {
        await fh.write(Buffer.alloc(PROBE_BYTES, 's3zmount\n'));
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw cacheDirError(abs, `cannot be written: ${writeProblem(err)}; ${ADVICE}`, err);
    }
    await punchProbe(abs, probe);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

/** The probe file's size: two pages, so that one can be punched out of it. */
const PROBE_BYTES = 8192;

/** Refuses a filesystem that cannot punch a hole in a file (vfat, NFS v3, ramfs, many FUSE filesystems). */
async function punchProbe(abs: string, probe: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(probe, 'r+');
    fileNative().punchHole(fh.fd, 0, 4096);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'EOPNOTSUPP' ? 'its filesystem cannot free part of a file' : `freeing part of a file there failed (${(err as Error).message})`;
    throw cacheDirError(abs, `cannot hold the cache: ${why}, which the cache needs for new and evicted blocks; use --cache-dir to pick a directory on ext4, xfs, btrfs or tmpfs`, err);
  } finally {
    await fh?.close();
  }
}

/**
 * mkdir -p, by hand: Node's recursive mkdir spins forever where a filesystem says ENOENT
 * to mkdir (/proc). Resolves to the directories it made, outermost first.
 */
export async function makeDirs(abs: string): Promise<string[]> {
  const missing: string[] = [];
  for (let p = abs; ; p = path.dirname(p)) {
    try {
      await stat(p);
      break; // the nearest that exists; if it is a file, mkdir or the caller's stat says so
    } catch (err) {
      if (codeOf(err) !== 'ENOENT' || p === path.dirname(p)) throw err;
      missing.unshift(p);
    }
  }
  const made: string[] = [];
  for (const p of missing) {
    await mkdir(p, { mode: 0o700 }).then(
      () => made.push(p),
      (err: unknown) => {
        if (codeOf(err) !== 'EEXIST') throw err;
      },
    );
  }
  return made;
}

async function mkdirError(abs: string, err: unknown): Promise<S3zError> {
  const code = codeOf(err);
  if (code === 'ENOTDIR') {
    const file = await firstFileAbove(abs);
    return cacheDirError(abs, `cannot be made: ${file ?? 'a part of its path'} is a file, not a directory; ${ADVICE}`, err);
  }
  return cacheDirError(abs, `cannot be made: ${writeProblem(err)}; ${ADVICE}`, err);
}

function writeProblem(err: unknown): string {
  switch (codeOf(err)) {
    case 'EROFS':
      return 'its filesystem is read-only';
    case 'ENOENT':
      return 'the filesystem there does not allow it';
    case 'EACCES':
    case 'EPERM':
      return 'no permission (is it owned by another user, or immutable?)';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'its filesystem is full';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/** The nearest existing ancestor of `abs` that is not a directory, if any. */
async function firstFileAbove(abs: string): Promise<string | undefined> {
  for (let p = path.dirname(abs); p !== path.dirname(p); p = path.dirname(p)) {
    const st = await stat(p).catch(() => undefined);
    if (st !== undefined) return st.isDirectory() ? undefined : p;
  }
  return undefined;
}

function codeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
}

function cacheDirError(abs: string, why: string, cause?: unknown): S3zError {
  const errno = (constants.errno as Record<string, number>)[codeOf(cause)] ?? constants.errno.EIO;
  return new S3zError('ECACHEDIR', `cache directory ${abs} ${why}`, cause === undefined ? { errno } : { errno, cause });
}
