// How much freed heap the process keeps, for the commands that move block data (the
// mount daemon, put, get). glibc gives freed memory back to the kernel once 128 KiB sit
// free at the top of the heap, so the next socket read or body copy lands in fresh
// pages; on these VMs the page fault costs more than the copy (perf of a cold read: page
// faults under the socket reads and body copies, ~20% of the daemon's CPU). Keeping up to
// KEEP_FREED_BYTES, and growing by TOP_PAD_BYTES at a time, makes them warm memory used
// again. The mechanism is native/s3zproc.c.
import { loadAddon } from './addon.js';

export const KEEP_FREED_BYTES = 64 * 1024 ** 2;
export const TOP_PAD_BYTES = 16 * 1024 ** 2;

interface ProcNative {
  keepFreedMemory(trimThreshold: number, topPad: number): boolean;
}

function checkBytes(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > 2 ** 31 - 1) throw new RangeError(`${name} must be a whole number of bytes from 0 to 2^31-1, not ${n}`);
}

/**
 * Asks the C library to keep up to `keep` bytes of freed memory and to grow the heap by
 * `pad` at a time. False when it cannot: no addon (a checkout not built with
 * `npm run build:native`), or a C library without these settings; nothing else changes then.
 */
export function keepFreedMemory(keep = KEEP_FREED_BYTES, pad = TOP_PAD_BYTES): boolean {
  checkBytes('keep', keep);
  checkBytes('pad', pad);
  let addon: ProcNative;
  try {
    addon = loadAddon<ProcNative>('s3zproc');
  } catch {
    return false;
  }
  return addon.keepFreedMemory(keep, pad);
}
