// The overlay layer, top of the stack in --overlay mounts: restore like an EBS
// volume. Writes stay local (LMDB table `overlay`, kept across overlay mounts of
// the same cache folder); the volume below is never changed.
//
// Block states (per index):
//   untouched  no overlay entry: reads go to the store below
//   written    entry = sha256 (32 raw bytes) + data: reads return the data
//   zeroed     entry = the 32-byte ZERO marker: reads return null, whatever is below
//
// Invariants:
//   - nothing written here ever reaches the store below: no write, no flush;
//   - a write resolves once its entry is committed to LMDB, so a crash of the
//     process keeps every acknowledged write;
//   - an entry is checked against its checksum on every read; a mismatch is ECORRUPT
//     (wrong bytes never go up, and never silently fall back to the older S3 data);
//   - memory holds only the writes in flight, never one entry per written block.
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { LocalDb } from './local-db.js';
import type { BlockStore, ReadOptions } from './types.js';
import { checkBlock, checkIndex, checkOpen } from './checks.js';
import { isZero, sha256Raw } from './checksum.js';

/** Nothing to configure yet; kept for the layer's uniform constructor. */
export type OverlayConfig = Record<string, never>;

export interface OverlayStats {
  /** Blocks with an overlay entry (written or zeroed). */
  blocks: number;
  /** Device bytes those entries shadow (blocks × blockSize; zeroed ones included). */
  bytes: number;
  /** Reads answered from the overlay. */
  hits: number;
  /** Entries that failed their checksum. */
  corrupt: number;
}

const HEADER = 32;
/** The entry of a block written as zeros (same convention as the cache's `blocks`). */
export const OVERLAY_ZERO_MARKER: Buffer = Buffer.alloc(HEADER);

export class OverlayStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stats: OverlayStats;
  #inner: BlockStore;
  #db: LocalDb;
  #log: Logger;
  #closed = false;
  /** Puts not yet committed, per block: such a block already counts in stats. */
  #pending = new Map<number, number>();
  #writes = new Set<Promise<unknown>>();

  constructor(_config: OverlayConfig, inner: BlockStore, deps: { log: Logger; db: LocalDb }) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.#inner = inner;
    this.#db = deps.db;
    this.#log = deps.log.child({ layer: 'overlay' });
    // A count, not a scan: reading every entry would read the whole overlay.
    const blocks = this.#db.overlay.getCount();
    this.stats = { blocks, bytes: blocks * this.blockSize, hits: 0, corrupt: 0 };
  }

  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    checkIndex(this, index, this.#closed);
    const entry = this.#db.overlay.get(index);
    if (entry === undefined) return this.#inner.read(index, opts);
    this.stats.hits++;
    return this.#decode(index, Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength));
  }

  async write(index: number, data: Buffer | null): Promise<void> {
    checkIndex(this, index, this.#closed);
    checkBlock(this, index, data);
    // A zero write must be kept too: it hides whatever the volume below holds.
    const entry =
      data === null || isZero(data) ? OVERLAY_ZERO_MARKER : Buffer.concat([sha256Raw(data), data], HEADER + data.length);
    const added = !this.#pending.has(index) && !this.#exists(index);
    if (added) this.#count(1);
    this.#pending.set(index, (this.#pending.get(index) ?? 0) + 1);
    const put = this.#db.overlay.put(index, entry);
    this.#writes.add(put);
    try {
      await put;
    } catch (err) {
      if (added) this.#count(-1);
      this.#log.error({ block: index, err: (err as Error)?.message }, 'overlay write failed');
      throw err;
    } finally {
      this.#writes.delete(put);
      const n = (this.#pending.get(index) ?? 1) - 1;
      if (n > 0) this.#pending.set(index, n);
      else this.#pending.delete(index);
    }
  }

  /** Makes every resolved write durable on the local disk; nothing goes below. */
  async flush(): Promise<void> {
    checkOpen(this.#closed);
    await this.#db.overlay.flushed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#writes);
    await this.#db.overlay.flushed;
    await this.#inner.close();
  }

  #decode(index: number, entry: Buffer): Buffer | null {
    if (entry.length === HEADER && entry.equals(OVERLAY_ZERO_MARKER)) return null;
    if (entry.length === HEADER + this.blockSize) {
      const data = entry.subarray(HEADER);
      if (sha256Raw(data).equals(entry.subarray(0, HEADER))) return data;
    }
    this.stats.corrupt++;
    this.#log.error({ block: index, length: entry.length }, 'overlay entry failed its checksum');
    throw new S3zError('ECORRUPT', `block ${index}: the local overlay entry is corrupt (${this.#db.dir})`);
  }

  /** Key-only lookup: doesExist() would copy the whole value out of LMDB. */
  #exists(index: number): boolean {
    for (const _ of this.#db.overlay.getKeys({ start: index, end: index + 1, limit: 1 })) return true;
    return false;
  }

  #count(delta: number): void {
    this.stats.blocks += delta;
    this.stats.bytes += delta * this.blockSize;
  }
}
