// The records of the cache's `local` table (LMDB): what the cache knows about each
// block it holds in its files. The first byte is the kind:
//   CLEAN  + SHA-256 (32 bytes)          the file holds what S3 holds
//   DIRTY  + CRC-32 per segment          the file holds a newer write; a write of a
//                                        few segments recomputes only theirs. The
//                                        segment count is the record's length: records
//                                        are written with segmentSize() (4 KiB for 1 MiB
//                                        blocks, 64 KiB at most) and read in any layout
//                                        (64 KiB before session 25)
//   ZEROS                                a dirty block written as zeros (range punched)
// Used by the cache and the overlay (which keeps its blocks in the same layouts). Pure
// functions: reading the bytes they describe is the caller's business (recordAfterWrite
// is handed a reader).
import { crc32 } from 'node:zlib';

export const CLEAN = 1;
export const DIRTY = 2;
export const ZEROS = 3;

/**
 * CRC-32 granularity of new dirty records: a 4 KiB write covers its segment, so it is
 * summed as it is, with nothing read back. Larger blocks get larger segments, 256 per
 * block (a record of 1 KiB), but never over 64 KiB, the earlier size, so that ZFS's
 * 128 KiB writes still cover whole segments (64 MiB blocks: 1024, a record of 4 KiB).
 */
const MIN_SEGMENT = 4096;
const MAX_SEGMENT = 64 * 1024;
const SEGMENTS = 256;

export const ZERO_RECORD: Buffer = Buffer.from([ZEROS]);

export function cleanRecord(sha256: Buffer): Buffer {
  return Buffer.concat([Buffer.from([CLEAN]), sha256]);
}

/** The SHA-256 a clean record holds, or undefined for any other record. */
export function cleanSum(record: Buffer | undefined): Buffer | undefined {
  return record !== undefined && record[0] === CLEAN && record.length === 33 ? record.subarray(1) : undefined;
}

export function segmentSize(blockSize: number): number {
  return Math.min(blockSize, MAX_SEGMENT, Math.max(MIN_SEGMENT, blockSize / SEGMENTS));
}

/** The segment size of a dirty layout (DIRTY, or the overlay's UNFLUSHED) of `length` bytes, or undefined if none fits this block size. */
export function layoutSegment(blockSize: number, length: number): number | undefined {
  if ((length - 1) % 4 !== 0) return undefined;
  const count = (length - 1) / 4;
  return count > 0 && blockSize % count === 0 ? blockSize / count : undefined;
}

/** The segment size a DIRTY record was written with, or undefined if it is not one for this block size. */
export function recordSegment(blockSize: number, record: Buffer | undefined): number | undefined {
  return record !== undefined && record[0] === DIRTY ? layoutSegment(blockSize, record.length) : undefined;
}

/**
 * The DIRTY record of a whole block's bytes, in segments of `segment` bytes (a journal
 * written by an earlier build is checked in its own layout), by default the current ones.
 */
export function checksumsOf(blockSize: number, data: Buffer, segment = segmentSize(blockSize)): Buffer {
  return sumSegments(Buffer.alloc(1 + (4 * blockSize) / segment), segment, 0, data);
}

const zeroRecords = new Map<number, Buffer>();

/**
 * The dirty record of a block of zeros: where a piece written over a punched-out block
 * (never written, or written as zeros) starts from, so that only the piece's segments
 * are summed rather than the whole block read back.
 */
export function zeroDirtyRecord(blockSize: number): Buffer {
  let record = zeroRecords.get(blockSize);
  if (record === undefined) {
    record = checksumsOf(blockSize, Buffer.alloc(blockSize));
    zeroRecords.set(blockSize, record);
  }
  return record;
}

/**
 * Which segments a write of `length` bytes at `at` touches, and whether `previous` (the
 * block's record before it) lets the others keep their CRCs; otherwise every segment.
 */
export function touchedSegments(blockSize: number, at: number, length: number, previous: Buffer | undefined): { first: number; last: number } {
  const seg = segmentSize(blockSize);
  if (recordSegment(blockSize, previous) !== seg) return { first: 0, last: blockSize / seg - 1 };
  return { first: Math.floor(at / seg), last: Math.floor((at + length - 1) / seg) };
}

/** The dirty record once segments first.. hold `bytes` (a whole number of segments), the rest as in `previous`. */
function dirtyRecord(blockSize: number, previous: Buffer | undefined, first: number, bytes: Buffer): Buffer {
  const seg = segmentSize(blockSize);
  const record = Buffer.alloc(1 + (4 * blockSize) / seg);
  if (previous !== undefined && previous[0] === DIRTY && previous.length === record.length) previous.copy(record);
  return sumSegments(record, seg, first, bytes);
}

function sumSegments(record: Buffer, seg: number, first: number, bytes: Buffer): Buffer {
  record[0] = DIRTY;
  for (let k = 0; k * seg < bytes.length; k++) record.writeUInt32BE(crc32(bytes.subarray(k * seg, (k + 1) * seg)), 1 + 4 * (first + k));
  return record;
}

/**
 * The dirty record once `piece` was written at `at` over a block whose record was
 * `previous`: only the touched segments' CRCs are recomputed, over the piece itself when
 * it covers them exactly, else over what `read(from, length)` says the block now holds.
 */
export async function recordAfterWrite(
  blockSize: number,
  previous: Buffer | undefined,
  at: number,
  piece: Buffer,
  read: (from: number, length: number) => Promise<Buffer>,
): Promise<Buffer> {
  const { first, last } = touchedSegments(blockSize, at, piece.length, previous);
  const seg = segmentSize(blockSize);
  const from = first * seg;
  const to = (last + 1) * seg;
  const bytes = from === at && to === at + piece.length ? piece : await read(from, to - from);
  return dirtyRecord(blockSize, previous, first, bytes);
}
