// How much local disk the cache may use: --cache-size, bounded by what the cache
// dir's filesystem can hold. A cache that outgrows its disk fails LMDB commits;
// bounding it at mount keeps writers waiting on uploads (backpressure) instead.
// The room the cache has is the filesystem's free space plus what its block files
// and its LMDB file already hold; a margin covers LMDB's copy-on-write pages and
// the other files there (logs, the zero map).
import { statSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { S3zError } from '../errors.js';
import { formatSize } from '../size.js';
import { DEFAULT_CACHE_CONFIG } from '../store/cache-config.js';
import { SlabFiles, slabDir } from '../store/slab-file.js';

/** Share of the room the cache's data may take, and a fixed reserve on top. */
const USABLE_SHARE = 0.8;
const RESERVE = 16 * 1024 ** 2;

/** Dirty blocks allowed at most: memory holds a few small records per dirty block (256 MiB of 4 KiB blocks). */
const MAX_DIRTY_BLOCKS = 65_536;

export interface CacheBudget {
  /** Clean blocks beyond this are evicted. */
  readonly maxBytes: number;
  /** Writers wait while this much is dirty. */
  readonly maxDirtyBytes: number;
  /** Set when --cache-size did not fit and was bounded: what the user is told. */
  readonly warning: string | undefined;
}

/** The room in which `bytes` of cache are usable. */
function roomFor(bytes: number): number {
  return Math.ceil((bytes + RESERVE) / USABLE_SHARE);
}

/** Free bytes of the filesystem holding `dir` plus what the cache's LMDB file already holds. */
export function cacheRoom(dir: string): number {
  const fs = statfsSync(dir);
  let held = SlabFiles.usedBytes(slabDir(dir));
  try {
    held += statSync(path.join(dir, 'db', 'data.mdb')).size;
  } catch {
    // no database yet
  }
  return fs.bavail * fs.bsize + held;
}

export function cacheBudget(dir: string, requested: number, blockSize: number, room = cacheRoom(dir)): CacheBudget {
  // Two blocks: one being written while another uploads.
  const least = 2 * blockSize;
  if (requested < least) {
    throw new S3zError('EMOUNT', `--cache-size ${formatSize(requested)} is too small for this volume: the cache holds whole ${formatSize(blockSize)} blocks and needs at least two (--cache-size ${formatSize(least)})`);
  }
  const usable = Math.floor(room * USABLE_SHARE) - RESERVE;
  const total = Math.min(requested, usable);
  if (total < least) {
    throw new S3zError(
      'EMOUNT',
      `cache dir ${dir} has room for ${formatSize(Math.max(0, room))}; the cache needs at least ${formatSize(roomFor(least))} there: free some space or pick another --cache-dir`,
    );
  }
  const dirty = Math.min(DEFAULT_CACHE_CONFIG.maxDirtyBytes, MAX_DIRTY_BLOCKS * blockSize);
  const maxDirtyBytes = Math.max(blockSize, Math.min(dirty, Math.floor(total / 2)));
  const warning =
    total < requested
      ? `--cache-size ${formatSize(requested)} does not fit in ${dir} (${formatSize(room)} free); the cache is bounded to ${formatSize(total)}`
      : undefined;
  return { maxBytes: Math.max(blockSize, total - maxDirtyBytes), maxDirtyBytes, warning };
}
