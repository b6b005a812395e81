// The cache's block data on local disk: sparse "slab" files under <cacheDir>/data,
// block i at byte i*blockSize of the device, cut into 1 TiB files (ext4 caps a file
// at 16 TiB). Only cached blocks take space; an evicted block's range is punched
// out (native/s3zfile.c) and reads as zeros again.
// Reads and writes are by byte range, through libuv's threadpool (fs.read/fs.write),
// so a 4 KiB read of a cached block costs a 4 KiB read of a file.
// Invariants: files are opened once and kept open until close(); errors are
// S3zErrors: ENOSPACE for a full disk, EMOUNT for anything else. Each open file's
// size is known here (fstat at open, then every write); files never shrink (a punch
// keeps the size), so a range within it can be read in full by anyone holding the fd.
import { closeSync, fdatasync, fstatSync, mkdirSync, openSync, read, readSync, readdirSync, statSync, write, writeSync, constants } from 'node:fs';
import path from 'node:path';
import { S3zError } from '../errors.js';
import { FILE_ADDON, fileNative, type FileNative } from '../util/file-native.js';

/** Where a cache dir keeps its slab files (the cache, its budget and its trust check agree on it here). */
export function slabDir(cacheDir: string): string {
  return path.join(cacheDir, 'data');
}

/**
 * Reads up to this size of a verified block are done on the main thread: its pages are
 * almost always in the page cache (it was fetched, written or checked in this mount), and
 * there a pread takes ~3 µs against ~20 µs of main-thread time for the threadpool's round
 * trip (measured: 96k against 290k 4 KiB reads/s). The price is a stall of one disk read
 * when the kernel did drop those pages; larger reads go to the pool.
 */
export const SMALL_READ = 128 * 1024;

/**
 * Writes up to this size (ZFS's 128 KiB records, the journal's pieces) are done on the
 * calling thread: a write into the page cache costs less than the threadpool's two
 * hand-offs on a busy 2-core machine (the zfs step at 20 ms, 3 alternated pairs: daemon
 * CPU 5.5-6.1 against 5.8-7.1 s, write phase 9.4-9.9 against 9.4-10.8 s; session 12). The
 * price is a stall while the kernel throttles a writer of too many dirty pages, which
 * the early write-out of uploaded blocks (writeOut) keeps rare; whole blocks go to the pool.
 */
const SMALL_WRITE = 128 * 1024;

/** Bytes of the device per slab file. */
export const SLAB_BYTES = 2 ** 40;

function loadNative(): FileNative {
  try {
    return fileNative();
  } catch (err) {
    throw new S3zError('EMOUNT', `the file addon ${FILE_ADDON} could not be loaded (build it with "npm run build:native")`, { cause: err });
  }
}

function localError(what: string, file: string, err: unknown): S3zError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new S3zError('ENOSPACE', `${what} ${file}: the cache disk is full`, { cause: err });
  return new S3zError('EMOUNT', `${what} ${file}: ${(err as Error).message}`, { cause: err });
}

export class SlabFiles {
  readonly dir: string;
  readonly blockSize: number;
  #fds = new Map<number, number>();
  /** Per open slab, a lower bound of its file's size (exact unless changed from outside). */
  #sizes = new Map<number, number>();
  #closed = false;

  constructor(dir: string, blockSize: number) {
    this.dir = dir;
    this.blockSize = blockSize;
    loadNative();
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw localError('cannot make', dir, err);
    }
  }

  /** Reads [at, at+length) of block `index` into a new buffer (holes read as zeros). */
  read(index: number, at: number, length: number): Promise<Buffer> {
    return this.readInto(index, at, Buffer.allocUnsafe(length));
  }

  /** Reads [at, at+out.length) of block `index` into `out`, and resolves to it. */
  readInto(index: number, at: number, out: Buffer): Promise<Buffer> {
    const { fd, pos, file } = this.#locate(index, at);
    const length = out.length;
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        read(fd, out, done, length - done, pos + done, (err, n) => {
          if (err) return reject(localError('cannot read', file, err));
          // Past the end of a slab that was never written this far: zeros.
          if (n === 0) {
            out.fill(0, done);
            return resolve(out);
          }
          if (done + n < length) return step(done + n);
          resolve(out);
        });
      };
      step(0);
    });
  }

  /**
   * The same as read(), on the calling thread: for small reads of blocks just verified
   * (their pages are in the page cache), a pread costs microseconds, less than the
   * threadpool's hand-off and wake-up.
   */
  readNow(index: number, at: number, length: number): Buffer {
    const { fd, pos, file } = this.#locate(index, at);
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    try {
      while (done < length) {
        const n = readSync(fd, out, done, length - done, pos + done);
        if (n === 0) {
          out.fill(0, done);
          break;
        }
        done += n;
      }
    } catch (err) {
      throw localError('cannot read', file, err);
    }
    return out;
  }

  /**
   * Where [at, at+length) of block `index` lies in its file, when the file holds all of
   * it (a range past the file's end reads as zeros through read(), not through the fd).
   */
  where(index: number, at: number, length: number): { fd: number; position: number } | undefined {
    const { fd, pos, slab } = this.#locate(index, at);
    if (pos + length > (this.#sizes.get(slab) ?? 0)) return undefined;
    return { fd, position: pos };
  }

  /** Which slab file holds block `index` (its number in SLAB_BYTES steps of the device) and its fd. */
  fileOf(index: number): { file: number; fd: number } {
    const { fd, slab } = this.#locate(index, 0);
    return { file: slab, fd };
  }

  /** Writes `data` at `at` within block `index` (SMALL_WRITE says on which thread). */
  write(index: number, at: number, data: Buffer): Promise<void> {
    const { fd, pos, file, slab } = this.#locate(index, at);
    const written = (): void => {
      if (pos + data.length > (this.#sizes.get(slab) ?? 0)) this.#sizes.set(slab, pos + data.length);
    };
    if (data.length <= SMALL_WRITE) {
      try {
        for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, pos + done);
      } catch (err) {
        return Promise.reject(localError('cannot write', file, err));
      }
      written();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        write(fd, data, done, data.length - done, pos + done, (err, n) => {
          if (err) return reject(localError('cannot write', file, err));
          if (done + n < data.length) return step(done + n);
          written();
          resolve();
        });
      };
      step(0);
    });
  }

  /** Frees the local space of block `index`; it reads as zeros afterwards. */
  punch(index: number): void {
    const { fd, pos, file } = this.#locate(index, 0);
    try {
      loadNative().punchHole(fd, pos, this.blockSize);
    } catch (err) {
      throw localError('cannot free a block in', file, err);
    }
  }

  /**
   * Starts writing block `index`'s dirty pages to the local disk, without waiting. Once
   * a block is in S3 its local pages are only a cache; left dirty, they would be written
   * 30 s later or by the next sync() of anyone (zfs-fuse calls one in `zpool export`).
   */
  writeOut(index: number): void {
    const { fd, pos, file } = this.#locate(index, 0);
    try {
      loadNative().writeOut(fd, pos, this.blockSize);
    } catch (err) {
      throw localError('cannot start writing out a block of', file, err);
    }
  }

  /** Makes every write so far durable on the local disk (fdatasync of each open file). */
  async sync(): Promise<void> {
    await Promise.all(
      [...this.#fds].map(
        ([slab, fd]) =>
          new Promise<void>((resolve, reject) =>
            fdatasync(fd, (err) => (err ? reject(localError('cannot sync', path.join(this.dir, `slab-${slab}`), err)) : resolve())),
          ),
      ),
    );
  }

  /** Bytes the slab files take on disk (allocated, not their sparse size). */
  static usedBytes(dir: string): number {
    let used = 0;
    try {
      for (const name of readdirSync(dir)) used += statSync(path.join(dir, name)).blocks * 512;
    } catch {
      // no data dir yet
    }
    return used;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#fds.values()) closeSync(fd);
    this.#fds.clear();
    this.#sizes.clear();
  }

  #locate(index: number, at: number): { fd: number; pos: number; file: string; slab: number } {
    if (this.#closed) throw new S3zError('ECLOSED', 'the cache files are closed');
    const byte = index * this.blockSize + at;
    const slab = Math.floor(byte / SLAB_BYTES);
    const file = path.join(this.dir, `slab-${slab}`);
    let fd = this.#fds.get(slab);
    if (fd === undefined) {
      try {
        fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o600);
        this.#sizes.set(slab, fstatSync(fd).size);
      } catch (err) {
        if (fd !== undefined) closeSync(fd);
        throw localError('cannot open', file, err);
      }
      this.#fds.set(slab, fd);
    }
    return { fd, pos: byte - slab * SLAB_BYTES, file, slab };
  }
}
