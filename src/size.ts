// Sizes on the command line: "1G", "512M", "4K", "2T", "1048576". Binary units.
// Parsing is the `bytes` library's; this file only adds the suffix forms the CLI
// accepts ("1G" as well as "1GB"/"1GiB") and refuses fractions of a byte.
import bytes from 'bytes';
import { S3zError } from './errors.js';

const FORM = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$/i;

export function parseSize(text: string, what = 'size'): number {
  const m = FORM.exec(text);
  if (!m) throw new S3zError('EBADSIZE', `${what} "${text}" is not a size (use a number with an optional K, M, G or T suffix)`);
  // bytes floors fractions ("1.5K" is 1536, "0.3K" would be 307): refuse any that don't land on a byte.
  const parsed = bytes.parse(`${m[1]}${m[2] ?? ''}b`);
  const exact = Number(m[1]) * 1024 ** (m[2] === undefined ? 0 : 'kmgtp'.indexOf(m[2].toLowerCase()) + 1);
  if (parsed === null || parsed !== exact || !Number.isInteger(parsed)) {
    throw new S3zError('EBADSIZE', `${what} "${text}" is not a whole number of bytes`);
  }
  return parsed;
}

export function formatSize(n: number): string {
  // bytes counts in powers of 1024 but says "GB": say GiB, as storage people do.
  return (bytes.format(n, { unitSeparator: ' ', decimalPlaces: 1 }) ?? String(n)).replace(/([KMGTP])B$/, '$1iB');
}

export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 64 * 1024 * 1024;
export const MAX_VOLUME_SIZE = 2 ** 53;

/** Checks a volume geometry; throws EBADSIZE with the reason. */
export function checkGeometry(size: number, blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new S3zError('EBADSIZE', `block size ${blockSize} must be a power of two from 4K to 64M`);
  }
  if (!Number.isInteger(size) || size <= 0 || size > MAX_VOLUME_SIZE) {
    throw new S3zError('EBADSIZE', `size ${size} must be more than 0 and at most 2^53 bytes`);
  }
  if (size % blockSize !== 0) {
    throw new S3zError('EBADSIZE', `size ${size} is not a multiple of the block size ${blockSize} (${formatSize(blockSize)})`);
  }
}
