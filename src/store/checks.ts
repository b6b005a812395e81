// Argument checks shared by every BlockStore, so each layer refuses the same
// bad calls with the same errors.
import { S3zError } from '../errors.js';
import type { BlockStore } from './types.js';

export function checkIndex(store: BlockStore, index: number, closed: boolean): void {
  checkOpen(closed);
  if (!Number.isInteger(index) || index < 0 || index >= store.blockCount) {
    throw new S3zError('ERANGE', `block ${index} is outside the device (0..${store.blockCount - 1})`);
  }
}

export function checkBlock(store: BlockStore, index: number, data: Buffer | null): void {
  if (data !== null && data.length !== store.blockSize) {
    throw new S3zError('ERANGE', `block ${index}: ${data.length} bytes written to a ${store.blockSize}-byte block`);
  }
}

export function checkOpen(closed: boolean): void {
  if (closed) throw new S3zError('ECLOSED', 'the store is closed');
}

/** A byte range within one block: `length` > 0 bytes from `at`, inside the block. */
export function checkRange(store: BlockStore, index: number, at: number, length: number): void {
  if (!Number.isInteger(at) || !Number.isInteger(length) || at < 0 || length <= 0 || at + length > store.blockSize) {
    throw new S3zError('ERANGE', `block ${index}: range ${at}+${length} is outside a ${store.blockSize}-byte block`);
  }
}
