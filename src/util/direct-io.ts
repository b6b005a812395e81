// Direct I/O for the image files and devices that `get` writes and `put` reads:
// O_DIRECT on the open file, and buffers whose memory starts on a DIRECT_IO_ALIGN
// boundary, which O_DIRECT asks of the memory, the file offset and the length (block
// sizes are powers of two from 4 KiB, so offsets and lengths always qualify).
// Why: on these VMs a page of page cache touched for the first time costs more than the
// copy into it. `get` of 1 GiB through the page cache spent ~1.3 s of CPU in the kernel's
// copy into fresh page-cache pages, and its closing fdatasync waited ~0.7 s for the
// gigabyte to reach the disk; `put` of a 1 GiB file not in the page cache spent ~1.7 s
// of system CPU more than with O_DIRECT. With O_DIRECT the disk moves the bytes to or
// from our buffer, and a restore of a big volume does not push everything else out of
// the page cache.
// Everything here degrades to buffered I/O: without the addon, or where the kernel
// refuses O_DIRECT for the file, the caller is told `false` and nothing changes.
import { fileNative } from './file-native.js';

/** Memory and file-offset alignment for O_DIRECT: a page, which covers 512-byte and 4 KiB sectors. */
export const DIRECT_IO_ALIGN = 4096;

function checkAlign(align: number): void {
  if (!Number.isSafeInteger(align) || align < 1 || align > 2 ** 30 || (align & (align - 1)) !== 0) throw new RangeError(`alignment must be a power of two up to 2^30, not ${align}`);
}

/** Bytes to skip from the start of `view` to reach an `align` boundary; undefined without the addon. */
export function alignmentGap(view: ArrayBufferView, align: number): number | undefined {
  if (!ArrayBuffer.isView(view)) throw new TypeError('alignmentGap: a Buffer or typed array');
  checkAlign(align);
  let mod: number;
  try {
    mod = fileNative().addressMod(view, align);
  } catch {
    return undefined;
  }
  return (align - mod) % align;
}

/** Sets (or clears) O_DIRECT on `fd`; false (and the fd unchanged) without the addon or where the file refuses it. */
export function setDirectIO(fd: number, on: boolean): boolean {
  if (!Number.isSafeInteger(fd) || fd < 0 || fd > 2 ** 31 - 1) throw new RangeError(`setDirectIO: not a file descriptor: ${fd}`);
  if (typeof on !== 'boolean') throw new TypeError('setDirectIO: on must be a boolean');
  let native;
  try {
    native = fileNative();
  } catch {
    return false;
  }
  return native.directIO(fd, on);
}

/** Whether a file is (still) read or written with O_DIRECT; shared by the I/O on one fd. */
export interface DirectState {
  direct: boolean;
}

/**
 * Runs one read or write of `fd`. If it ran under O_DIRECT and the kernel refused it
 * (EINVAL: a filesystem that asks for another alignment than ours), O_DIRECT is turned
 * off for the file and the call is made again, buffered; `onFallback` hears of it once.
 */
export async function directOrBuffered<T>(fd: number, state: DirectState, io: () => Promise<T>, onFallback?: (err: unknown) => void): Promise<T> {
  const wasDirect = state.direct;
  try {
    return await io();
  } catch (err) {
    if (!wasDirect || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    // Several calls in flight may fail so: the first one turns it off.
    if (state.direct) {
      state.direct = false;
      setDirectIO(fd, false);
      onFallback?.(err);
    }
    return io();
  }
}
