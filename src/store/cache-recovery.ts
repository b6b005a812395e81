// What the cache does with its files before it serves anything after a stop of any
// kind: dirty blocks are checked against their journal, and a cache dir of format 1
// (whole blocks as LMDB values) is moved into files.
// - After a plain crash (same boot) the file is authoritative: the kernel kept every
//   write, perhaps one more than was acknowledged, so its record is rewritten from it.
// - After a reboot (the boot id changed) a dirty block whose bytes do not match its
//   journaled CRCs is dropped, never uploaded: it was never flushed (fsync uploads
//   first), so ZFS tolerates losing it, and the block is read from S3 again.
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import type { Logger } from '../log.js';
import type { LocalDb } from './local-db.js';
import type { SlabFiles } from './slab-file.js';
import { ZEROS, ZERO_RECORD, checksumsOf, recordSegment } from './cache-records.js';

/** The cache format of these files; an older cache dir is migrated. */
const FORMAT = 2;

export interface RecoveryDeps {
  readonly db: LocalDb;
  readonly files: SlabFiles;
  readonly blockSize: number;
  readonly log: Logger;
}

export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** True when the cache dir was last used before the machine restarted; records this boot. */
export async function noteBoot(db: LocalDb): Promise<boolean> {
  const boot = bootId();
  const before = db.meta.get('bootId');
  await db.meta.put('bootId', boot);
  return before !== undefined && before !== boot;
}

export type Recheck = 'zeros' | 'verified' | 'rejournaled' | 'dropped';

export async function recheckDirty(d: RecoveryDeps, index: number, rebooted: boolean): Promise<Recheck> {
  const record = d.db.local.get(index);
  if (record !== undefined && record[0] === ZEROS) return 'zeros';
  const now = checksumsOf(d.blockSize, await d.files.read(index, 0, d.blockSize), recordSegment(d.blockSize, record));
  if (record !== undefined && now.equals(record)) return 'verified';
  if (rebooted) {
    d.log.error({ block: index }, 'after a reboot the local copy of an unuploaded write does not match its journal: dropped (never flushed); the block is read from S3 again');
    await d.db.transaction(() => {
      d.db.dirty.removeSync(index);
      d.db.local.removeSync(index);
    });
    d.files.punch(index);
    return 'dropped';
  }
  await d.db.local.put(index, now);
  return 'rejournaled';
}

/** Moves a format-1 journal into files and drops the rest; returns the blocks moved. */
export async function migrate(d: RecoveryDeps): Promise<number> {
  if (d.db.meta.get('cacheFormat') === FORMAT) return 0;
  const legacy = d.db.legacyBlocks;
  let moved = 0;
  for (const key of d.db.dirty.getKeys()) {
    const entry = legacy.get(key);
    if (entry === undefined) continue;
    if (entry.length === 4 && entry.readUInt32BE(0) === 0) {
      d.files.punch(key);
      await d.db.local.put(key, ZERO_RECORD);
    } else {
      const data = Buffer.from(entry.subarray(4));
      if (data.length !== d.blockSize || crc32(data) !== entry.readUInt32BE(0)) {
        d.log.error({ block: key }, 'a journaled block of the old cache format fails its checksum: dropped');
        await d.db.dirty.remove(key);
        continue;
      }
      await d.files.write(key, 0, data);
      await d.db.local.put(key, checksumsOf(d.blockSize, data));
    }
    moved++;
  }
  await legacy.clearAsync();
  await d.db.meta.put('cacheFormat', FORMAT);
  if (moved > 0) d.log.info({ moved }, 'cache dir migrated to block files');
  return moved;
}
