// The file addon (native/s3zfile.c), for the modules that use it: the cache's slab
// files (hole punching, write-out) and direct I/O (direct-io.ts). Arguments are checked by the
// callers before they reach it.
import { addonPath, loadAddon } from './addon.js';

export interface FileNative {
  punchHole(fd: number, offset: number, length: number): void;
  /** Starts writing the range's dirty pages to the disk; does not wait for them. */
  writeOut(fd: number, offset: number, length: number): void;
  /** Sets or clears O_DIRECT; false when the file's filesystem or device refuses it. */
  directIO(fd: number, on: boolean): boolean;
  /** The address of the view's first byte modulo `n` (a power of two). */
  addressMod(view: ArrayBufferView, n: number): number;
}

export const FILE_ADDON = addonPath('s3zfile');

/** The addon; throws what `require` threw when it is missing (a checkout not built with `npm run build:native`). */
export function fileNative(): FileNative {
  return loadAddon<FileNative>('s3zfile');
}
