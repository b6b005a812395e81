// Reply encoders: a handler's result checked and packed into the flat vectors the
// addon reads (layouts A_*, F_* and the setattr vector in native/s3zfuse.c). Pure
// functions: a result of the wrong shape throws a TypeError, which the session
// answers EIO and reports.
import type { DirEntry, FileSlice, LentBytes, SetattrChanges, Stat, Statfs } from './types.js';
import {
  S_IFDIR, S_IFMT, SET_ATIME, SET_ATIME_NOW, SET_CTIME, SET_GID, SET_MODE, SET_MTIME, SET_MTIME_NOW, SET_SIZE, SET_UID, STATFS_LEN,
} from './native.js';
import { num } from './util.js';

/** What an attribute reply says when the handler leaves a field out. */
export interface AttrDefaults {
  readonly uid: number;
  readonly gid: number;
  readonly timeMs: number;
}

/** Fills `v` (ATTR_LEN long, layout A_* in the C file) from `st`. */
export function fillAttr(v: Float64Array, st: Stat, ino: number, d: AttrDefaults): void {
  if (typeof st !== 'object' || st === null) throw new TypeError('attributes must be a Stat object');
  const mode = num('Stat.mode', st.mode, -1);
  if (mode < 0) throw new TypeError('Stat.mode is required');
  const size = num('Stat.size', st.size, 0);
  v[0] = ino;
  v[1] = mode;
  v[2] = num('Stat.nlink', st.nlink, (mode & S_IFMT) === S_IFDIR ? 2 : 1);
  v[3] = num('Stat.uid', st.uid, d.uid);
  v[4] = num('Stat.gid', st.gid, d.gid);
  v[5] = num('Stat.rdev', st.rdev, 0);
  v[6] = size;
  v[7] = num('Stat.blocks', st.blocks, Math.ceil(size / 512));
  v[8] = num('Stat.blksize', st.blksize, 4096);
  v[9] = num('Stat.atimeMs', st.atimeMs, d.timeMs);
  v[10] = num('Stat.mtimeMs', st.mtimeMs, d.timeMs);
  v[11] = num('Stat.ctimeMs', st.ctimeMs, d.timeMs);
}

/** Names and [ino, mode, nextOffset] per entry of a readdir reply. */
export function dirVec(v: readonly DirEntry[], offset: number): { names: string[]; vec: Float64Array } {
  if (!Array.isArray(v)) throw new TypeError('the readdir handler must return an array of DirEntry');
  const names: string[] = new Array<string>(v.length);
  const vec = new Float64Array(v.length * 3);
  for (let i = 0; i < v.length; i++) {
    const ent = v[i] as DirEntry;
    if (typeof ent !== 'object' || ent === null) throw new TypeError('DirEntry must be an object');
    if (typeof ent.name !== 'string' || ent.name.length === 0 || ent.name.includes('/') || ent.name.includes('\0') || Buffer.byteLength(ent.name) > 255) {
      throw new TypeError(`bad DirEntry name ${JSON.stringify(ent.name)}`);
    }
    names[i] = ent.name;
    vec[i * 3] = num('DirEntry.ino', ent.ino, 0);
    vec[i * 3 + 1] = num('DirEntry.mode', ent.mode, 0) & S_IFMT;
    vec[i * 3 + 2] = num('DirEntry.offset', ent.offset, offset + i + 1);
  }
  return { names, vec };
}

/** The statfs vector (layout F_* in the C file). */
export function statfsVec(v: Statfs): Float64Array {
  if (typeof v !== 'object' || v === null) throw new TypeError('the statfs handler must return a Statfs');
  const vec = new Float64Array(STATFS_LEN);
  const bsize = num('Statfs.bsize', v.bsize, 4096);
  vec[0] = bsize;
  vec[1] = num('Statfs.frsize', v.frsize, bsize);
  vec[2] = num('Statfs.blocks', v.blocks, 0);
  vec[3] = num('Statfs.bfree', v.bfree, 0);
  vec[4] = num('Statfs.bavail', v.bavail, vec[3]);
  vec[5] = num('Statfs.files', v.files, 0);
  vec[6] = num('Statfs.ffree', v.ffree, 0);
  vec[7] = num('Statfs.favail', v.favail, vec[6]);
  vec[8] = num('Statfs.fsid', v.fsid, 0);
  vec[9] = num('Statfs.namemax', v.namemax, 255);
  return vec;
}

/** True for a read result that is LentBytes (checked by checkLent), not a FileSlice. */
export function isLent(v: object): v is LentBytes {
  return 'bytes' in v;
}

/** Checks a read handler's LentBytes against the request's size (before any native call). */
export function checkLent(v: LentBytes, size: number): void {
  if (typeof v.release !== 'function') throw new TypeError('LentBytes.release must be a function');
  if (!(v.bytes instanceof Uint8Array)) throw new TypeError('LentBytes.bytes must be a Uint8Array');
  if (v.bytes.length > size) throw new TypeError(`LentBytes.bytes must hold at most the request's size (${size})`);
}

/** Checks a read handler's FileSlice against the request's size (before any native call). */
export function checkSlice(v: unknown, size: number): asserts v is FileSlice {
  if (typeof v !== 'object' || v === null) throw new TypeError('the read handler must return a Uint8Array, a FileSlice or LentBytes');
  const { fd, position, length, release } = v as Partial<FileSlice>;
  if (typeof release !== 'function') throw new TypeError('FileSlice.release must be a function');
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) throw new TypeError('FileSlice.fd must be an open file descriptor');
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) throw new TypeError('FileSlice.position must be a safe integer >= 0');
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 || length > size) {
    throw new TypeError(`FileSlice.length must be an integer from 0 to the request's size (${size})`);
  }
}

export function fhOf(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new TypeError('fh must be a safe integer >= 0');
  return v;
}

/** A setattr request's changes, from its to_set bits and vector. */
export function setattrChanges(toSet: number, v: Float64Array): SetattrChanges {
  const c: SetattrChanges = {};
  if (toSet & SET_MODE) c.mode = v[0] ?? 0;
  if (toSet & SET_UID) c.uid = v[1] ?? 0;
  if (toSet & SET_GID) c.gid = v[2] ?? 0;
  if (toSet & SET_SIZE) c.size = v[3] ?? 0;
  if (toSet & SET_ATIME_NOW) c.atimeMs = 'now';
  else if (toSet & SET_ATIME) c.atimeMs = v[4] ?? 0;
  if (toSet & SET_MTIME_NOW) c.mtimeMs = 'now';
  else if (toSet & SET_MTIME) c.mtimeMs = v[5] ?? 0;
  if (toSet & SET_CTIME) c.ctimeMs = v[6] ?? 0;
  return c;
}
