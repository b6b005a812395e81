// Mount points: the process's mount table, the checks that say why a mount would
// fail before it is tried, and detaching a mount (root: umount2; otherwise fusermount3).
import { execFile, spawnSync } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, readFile, readdir, realpath, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { S3zError } from '../errors.js';
import { loadNative } from './native.js';
import type { MountOptions } from './types.js';
import { messageOf } from './util.js';

const E = osConstants.errno;

export const isRoot = (): boolean => process.getuid?.() === 0;

export interface MountInfo {
  dev: string; // "major:minor"
  mountpoint: string;
  fstype: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The current mount table of this process's namespace. */
export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({
      dev: f[2] ?? '',
      mountpoint: unescapeMount(f[4] ?? ''),
      fstype: f[sep + 1] ?? '',
      source: unescapeMount(f[sep + 2] ?? ''),
    });
  }
  return out;
}

export function mountError(dir: string, errno: number, why: string, cause?: unknown): S3zError {
  return new S3zError('EMOUNT', `cannot mount on ${dir}: ${why}`, cause === undefined ? { errno } : { errno, cause });
}

/**
 * Why a mount on `dir` would fail (missing, busy or non-empty mount point, no
 * /dev/fuse, no permission), as an EMOUNT S3zError; resolves to the resolved mount point. mount()
 * runs it before any native call; callers may run it earlier to fail before other work.
 */
export async function checkMountpoint(dir: string, opts: Pick<MountOptions, 'allowOther' | 'allowNonempty'> = {}): Promise<string> {
  // Resolve the parent only: touching the directory itself could block on a hung mount.
  const abs = resolve(dir);
  let target: string;
  try {
    target = abs === '/' ? '/' : join(await realpath(dirname(abs)), basename(abs));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw mountError(dir, E.ENOENT, 'the mount point does not exist', err);
    if (code === 'EACCES') throw mountError(dir, E.EACCES, 'no permission to reach the mount point', err);
    throw mountError(dir, E.EIO, messageOf(err), err);
  }
  const busy = (await readMountInfo()).filter((m) => m.mountpoint === target);
  const last = busy[busy.length - 1];
  if (last !== undefined) {
    throw mountError(dir, E.EBUSY, `it is already a mount point (${last.fstype} from ${last.source}); unmount it first` +
      (last.fstype.startsWith('fuse') ? ` (fusermount3 -u ${target})` : ''));
  }
  try {
    const st = await stat(target);
    if (!st.isDirectory()) throw mountError(dir, E.ENOTDIR, 'the mount point is not a directory');
  } catch (err) {
    if (err instanceof S3zError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw mountError(dir, E.ENOENT, 'the mount point does not exist', err);
    if (code === 'EACCES') throw mountError(dir, E.EACCES, 'no permission to access the mount point', err);
    if (code === 'ENOTCONN') {
      throw mountError(dir, E.EBUSY, `a dead FUSE mount is there; clear it with "fusermount3 -u ${target}"`, err);
    }
    throw mountError(dir, E.EIO, messageOf(err), err);
  }
  if (opts.allowNonempty !== true) {
    const entries = await readdir(target).catch(() => [] as string[]);
    if (entries.length > 0) {
      const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ` and ${entries.length - 3} more` : '');
      throw mountError(dir, E.ENOTEMPTY, `the directory is not empty (it holds ${shown}) and the mount would hide that; pass --allow-nonempty to mount over it`);
    }
  }
  try {
    await access('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw mountError(dir, E.ENODEV, '/dev/fuse does not exist: FUSE is not available here (load the fuse kernel module; in a container, pass --device /dev/fuse)', err);
    }
    throw mountError(dir, E.EACCES, 'no permission to open /dev/fuse (run as root or add the user to the group owning /dev/fuse)', err);
  }
  // Something else in its place (a file, another device bound over it) makes the kernel's
  // mount fail with a bare EINVAL.
  const dev = await stat('/dev/fuse').catch(() => undefined);
  if (dev !== undefined && (!dev.isCharacterDevice() || dev.rdev !== FUSE_RDEV)) {
    throw mountError(dir, E.ENODEV, '/dev/fuse is not the FUSE device (character device 10, 229): FUSE is not available here (in a container, pass --device /dev/fuse)');
  }
  if (!isRoot()) {
    try {
      await access(target, fsConstants.W_OK);
    } catch (err) {
      throw mountError(dir, E.EACCES, 'no permission: an unprivileged user can only mount on a directory it may write', err);
    }
    if (!(await findFusermount())) throw mountError(dir, E.EACCES, 'no permission: not root and fusermount3 is not installed (apt-get install fuse3)');
    if (opts.allowOther) {
      const conf = await readFile('/etc/fuse.conf', 'utf8').catch(() => '');
      if (!/^\s*user_allow_other\b/m.test(conf)) {
        throw mountError(dir, E.EACCES, 'no permission for allowOther: /etc/fuse.conf lacks user_allow_other');
      }
    }
  }
  return target;
}

/** /dev/fuse's device number: major 10 (misc), minor 229, as Linux encodes it for small numbers. */
const FUSE_RDEV = (10 << 8) | 229;

async function findFusermount(): Promise<boolean> {
  for (const d of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    if (!d) continue;
    try {
      await access(join(d, 'fusermount3'), fsConstants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Lazily detach a mount (the kernel ends the connection when the last user lets go). */
export async function detach(target: string): Promise<void> {
  if (isRoot()) {
    loadNative().umount(target, loadNative().constants.MNT_DETACH);
    return;
  }
  await new Promise<void>((res, rej) => {
    execFile('fusermount3', ['-u', '-z', target], (err, _out, stderr) => {
      if (err) rej(Object.assign(new Error(`fusermount3 -u -z ${target}: ${stderr.trim() || err.message}`), { code: 'EINVAL' }));
      else res();
    });
  });
}

export function detachSync(target: string): void {
  try {
    if (isRoot()) loadNative().umount(target, loadNative().constants.MNT_DETACH);
    else spawnSync('fusermount3', ['-u', '-z', target], { stdio: 'ignore' });
  } catch {
    // best effort at exit
  }
}