// The cache layer's settings, their defaults and its counters (cache.ts). The defaults
// are measured choices: each says where its figure comes from.

export interface CacheConfig {
  /** Clean blocks beyond this many bytes are evicted, least recently used first. */
  readonly maxBytes: number;
  /** Read-only and overlay mounts: writes are refused here and nothing is uploaded. */
  readonly readOnly: boolean;
  /** Uploads in flight at once; kept below the S3 socket pool so reads always find a socket. */
  readonly uploadConcurrency: number;
  /** Writes wait while this much data is dirty. */
  readonly maxDirtyBytes: number;
  /**
   * A dirty block waits this long before its upload starts, unless a flush or dirty-data
   * pressure asks for it: ZFS writes a 1 MiB block as several 128 KiB pieces, and each
   * piece would otherwise cost a PUT of the whole block.
   */
  readonly writeDelayMs: number;
}

export const DEFAULT_CACHE_CONFIG: Omit<CacheConfig, 'readOnly'> = {
  maxBytes: 10 * 1024 ** 3,
  // Session 18, a 512 MiB sequential write until in S3 through the latency proxy at
  // 50 ms, alternating: 32 uploads wrote 135 / 154 / 160 MB/s against 117 / 148 / 121
  // for 16 (s3backer, 20 threads: 114 / 105); at 0 and 20 ms the two were within the
  // spread. Each upload holds a block buffer: at most 128 MiB of them (uploadsFor).
  uploadConcurrency: 32,
  // Dirty data lives in the cache files, not in memory. Random 4 KiB writes over 1 GiB
  // (fio, 15 s, local s3rver): 166 IOPS with 128 MiB, when each write waited for a 1 MiB
  // upload; 6.4-6.9k with 1 GiB (s3backer, its cache holding the volume: 12.1k).
  maxDirtyBytes: 1024 ** 3,
  writeDelayMs: 1000,
};

export interface CacheStats {
  hit: number;
  miss: number;
  blocks: number;
  bytes: number;
  dirtyBlocks: number;
  inflight: number;
  uploads: number;
  uploadErrors: number;
  evictions: number;
  corrupt: number;
  replayed: number;
  /** Local writes the disk refused (a full cache disk). */
  localErrors: number;
  /** Dirty blocks dropped after a reboot because their bytes did not match the journal. */
  dropped: number;
  /** Reads answered with a slice of a local file (no copy through memory here). */
  slices: number;
  /** Reads of a block being fetched answered from it once verified, before its file write. */
  fromFetch: number;
  /** Uploaded blocks whose local pages were then sent on their way to the disk. */
  writeOuts: number;
}

/**
 * Block buffers the uploads in flight hold at most: each upload reads its whole block
 * into memory, so large blocks get fewer uploads at once (32 of 1–4 MiB, 2 of 64 MiB).
 */
const UPLOAD_BUFFER_BYTES = 128 * 1024 ** 2;

export function uploadsFor(concurrency: number, blockSize: number): number {
  return Math.min(concurrency, Math.max(2, Math.floor(UPLOAD_BUFFER_BYTES / blockSize)));
}
