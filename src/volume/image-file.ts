// The local side of `put` and `get`: a regular file, a block device, or stdin/stdout
// ("-"). Knows sizes and how to open each kind; knows nothing of S3.
// A block device has no size in stat(): it comes from BLKGETSIZE64, read through
// `blockdev --getsize64` (util-linux), since Node has no ioctl.
import { execFile } from 'node:child_process';
import { open, stat, statfs, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { S3zError } from '../errors.js';

export type ImageKind = 'file' | 'device' | 'stdio';

export interface ImageSource {
  readonly kind: ImageKind;
  readonly name: string;
  /** Bytes; undefined for stdin (known only at its end). */
  readonly size: number | undefined;
  /** Undefined for stdin. */
  readonly handle: FileHandle | undefined;
}

export async function deviceSize(path: string): Promise<number> {
  try {
    const { stdout } = await promisify(execFile)('blockdev', ['--getsize64', path]);
    const n = Number(stdout.trim());
    if (!Number.isSafeInteger(n)) throw new Error(`blockdev said "${stdout.trim()}"`);
    return n;
  } catch (err) {
    throw new S3zError('EIMAGE', `${path}: cannot read the block device's size (blockdev --getsize64: ${(err as Error).message.split('\n')[0] ?? ''})`, { cause: err });
  }
}

/** Filesystems whose "regular files" are the kernel's (statfs f_type): they have no size and cannot be written at an offset. */
const KERNEL_FS = new Map<number, string>([
  [0x9fa0, 'procfs'], [0x62656572, 'sysfs'], [0x64626720, 'debugfs'], [0x74726163, 'tracefs'], [0x73636673, 'securityfs'],
  [0x63677270, 'cgroup2'], [0x27e0eb, 'cgroup'], [0x62656570, 'configfs'], [0xcafe4a11, 'bpf'], [0xde5e81e4, 'efivarfs'],
]);

/** Refuses a regular file that is one of the kernel's (under /proc, /sys): one line instead of an empty image or ESPIPE. */
async function refuseKernelFile(path: string): Promise<void> {
  const fs = await statfs(path).catch(() => undefined);
  const name = fs === undefined ? undefined : KERNEL_FS.get(fs.type);
  if (name !== undefined) throw new S3zError('EIMAGE', `${path}: a file of the kernel's (${name}), not a regular file or a block device`);
}

/** Opens the image `put` reads. */
export async function openSource(path: string): Promise<ImageSource> {
  if (path === '-') return { kind: 'stdio', name: 'stdin', size: undefined, handle: undefined };
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw fileError(path, err);
  }
  if (st.isDirectory()) throw new S3zError('EIMAGE', `${path}: is a directory, not an image`);
  if (!st.isFile() && !st.isBlockDevice()) throw new S3zError('EIMAGE', `${path}: not a regular file or a block device (use "-" for a pipe)`);
  if (st.isFile()) await refuseKernelFile(path);
  const handle = await open(path, 'r').catch((err: unknown) => {
    throw fileError(path, err);
  });
  try {
    const size = st.isBlockDevice() ? await deviceSize(path) : st.size;
    return { kind: st.isBlockDevice() ? 'device' : 'file', name: path, size, handle };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

export interface ImageTarget {
  readonly kind: ImageKind;
  readonly name: string;
  /** True when the target may hold old data (a device, or a file kept with --force): blocks are compared first. */
  readonly mayHoldData: boolean;
  readonly handle: FileHandle | undefined;
}

/** Opens the image `get` writes; refuses to replace an existing file without `force`. */
export async function openTarget(path: string, volumeSize: number, force: boolean): Promise<ImageTarget> {
  if (path === '-') return { kind: 'stdio', name: 'stdout', mayHoldData: false, handle: undefined };
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw fileError(path, err);
  });
  if (st === undefined) {
    // 'wx': a file that appeared since the stat is not overwritten either.
    const handle = await open(path, 'wx').catch((err: unknown) => {
      throw fileError(path, err);
    });
    return { kind: 'file', name: path, mayHoldData: false, handle };
  }
  if (st.isDirectory()) throw new S3zError('EIMAGE', `${path}: is a directory; give the image's file name`);
  if (st.isBlockDevice()) {
    const size = await deviceSize(path);
    if (size < volumeSize) throw new S3zError('EIMAGE', `${path}: the device holds ${size} bytes, less than the volume's ${volumeSize}`);
    // No --force needed: writing to a device is what naming one asks for.
    const handle = await open(path, 'r+').catch((err: unknown) => {
      throw fileError(path, err);
    });
    return { kind: 'device', name: path, mayHoldData: true, handle };
  }
  if (!st.isFile()) throw new S3zError('EIMAGE', `${path}: not a regular file or a block device (use "-" for stdout)`);
  await refuseKernelFile(path);
  if (!force) {
    throw new S3zError('EIMAGE', `${path}: already exists; pass --force to overwrite it (only blocks that differ are written, which also resumes an interrupted get)`);
  }
  const handle = await open(path, 'r+').catch((err: unknown) => {
    throw fileError(path, err);
  });
  return { kind: 'file', name: path, mayHoldData: st.size > 0, handle };
}

function fileError(path: string, err: unknown): S3zError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT' ? 'no such file or directory'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EEXIST' ? 'already exists; pass --force to overwrite it'
    : code === 'ENOTDIR' ? 'a part of its path is not a directory'
    : code === 'EROFS' ? 'read-only filesystem'
    : code === 'ENOSPC' || code === 'EDQUOT' ? 'no space left on its disk'
    : code === 'EFBIG' ? 'too large for its filesystem'
    : code === 'EIO' ? 'input/output error (a failing disk?)'
    : code === 'ESPIPE' ? 'cannot be read or written at an offset (a special file?); give a regular file, a block device or -'
    : (err as Error).message;
  return new S3zError('EIMAGE', `${path}: ${why}`, { cause: err });
}

/** What a local disk answers a read or write with (a socket's ECONNRESET also comes from a "read"). */
const DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EIO', 'EROFS', 'EACCES', 'EPERM', 'ESPIPE']);

/**
 * What a read or write of the image failed with, as one line naming the image; errors
 * that are not the local file's (S3, a bug) pass through unchanged.
 */
export function imageIoError(name: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (err instanceof S3zError || typeof code !== 'string' || !DISK_ERRORS.has(code)) return err;
  return fileError(name, err);
}

/**
 * Failures that running the same transfer again can get past (S3 answering again, room
 * made on the disk). Not ECORRUPT: a block that failed its checksum on every retry is
 * damaged in S3, and the next run would stop at it again.
 */
const RESUMABLE = new Set<string>(['EACCESS', 'EUNREACHABLE', 'EMISSING', 'ESTALE', 'ES3']);
const RESUMABLE_LOCAL = new Set(['ENOSPC', 'EDQUOT', 'EIO']);

/**
 * The error of a transfer cut short, told how to go on when running it again can help
 * (it compares before it moves anything); an image too large, say, is left as it is.
 */
export function withResumeHint(err: unknown, hint: string): unknown {
  if (!isResumable(err)) return err;
  return new S3zError(err.code, `${err.message}; ${hint}`, { cause: err, errno: err.errno });
}

export function isResumable(err: unknown): err is S3zError {
  if (!(err instanceof S3zError)) return false;
  const local = err.code === 'EIMAGE' && RESUMABLE_LOCAL.has(String((err.cause as NodeJS.ErrnoException | undefined)?.code));
  return RESUMABLE.has(err.code) || local;
}
