// The one place where the block stack is put together (DESIGN §3):
//   overlay (--overlay) -> cache -> prefetch -> guard -> zero map -> s3
// and where the layers' counters are gathered into the stats file's shape.
// Read-only and overlay stacks open every layer below the overlay read-only,
// so nothing can reach S3 but GETs and LISTs.
import type { Logger } from '../log.js';
import type { LocalDb } from '../store/local-db.js';
import { isRangeStore, type BlockStore, type DirectReads, type RangeStore } from '../store/types.js';
import { S3BlockStore } from '../store/s3-store.js';
import { ZeroMapStore, DEFAULT_ZERO_MAP_CONFIG } from '../store/zero-map.js';
import { GuardStore, DEFAULT_GUARD_CONFIG } from '../store/guard.js';
import { PrefetchStore, DEFAULT_PREFETCH_CONFIG } from '../store/prefetch.js';
import { CacheStore, DEFAULT_CACHE_CONFIG } from '../store/cache.js';
import { OverlayStore } from '../store/overlay.js';
import { storedBlocks } from '../volume/inventory.js';
import type { Volume } from '../volume/volume.js';
import type { StorageClass } from '../volume/storage.js';
import { requestCost } from '../volume/pricing.js';
import { Hydrator, type HydrationStats } from './hydrate.js';
import { validateCache } from './cache-trust.js';

export interface StackOptions {
  readonly volume: Volume;
  readonly db: LocalDb;
  readonly mode: 'read-write' | 'read-only' | 'overlay';
  /** The cache's bounds, fitted to its disk (cache-budget.ts). */
  readonly cacheBytes: { readonly maxBytes: number; readonly maxDirtyBytes: number };
  /** Token of the lease found at mount: the persisted zero map is reused only if it carries it. */
  readonly leaseToken: string | null;
  /** Token this session leaves in the lease (a read-write mount's own). */
  readonly newToken: string | null;
  /** A live writer holds the lease (a forced read-only or overlay mount): nothing local can be trusted later. */
  readonly writerLive: boolean;
  readonly log: Logger;
  /** `mount --storage-class`: new block writes go there instead of the descriptor's class. */
  readonly storageClass?: StorageClass | undefined;
}

export interface Stack {
  readonly top: BlockStore;
  stats(): StackStats;
  startHydration(): void;
  /**
   * Lets reads of verified local blocks be answered below JS (the FUSE binding's direct
   * reads); under an overlay, only of the blocks it does not shadow.
   */
  readonly useDirectReads?: (direct: DirectReads) => void;
}

export interface StackStats {
  s3: { get: number; put: number; delete: number; list: number; head: number; bytesIn: number; bytesOut: number; retries: number; stale: number; corrupt: number };
  cache: { hit: number; miss: number; blocks: number; bytes: number; evictions: number; corrupt: number; uploads: number; uploadErrors: number; replayed: number; localErrors: number };
  dirtyBlocks: number;
  dirtyBytes: number;
  inflight: number;
  hydration: HydrationStats;
  zeroMap: { stored: number; zeroReads: number; loadedFrom: string; listPages: number; listing: boolean; unlistedReads: number };
  prefetch: Record<string, number>;
  overlay: Record<string, number> | null;
  /** The s3 requests (and IA retrievals) above at list prices (volume/pricing.ts). */
  requestCostUsd: number;
}

export async function composeStack(o: StackOptions): Promise<Stack> {
  const { volume, db, log } = o;
  const readOnly = o.mode !== 'read-write';
  const blockSize = volume.descriptor.blockSize;
  const blockCount = volume.descriptor.size / blockSize;

  // Before any layer reads its tables: what cannot be proven current is dropped first.
  await validateCache(db, { mode: o.mode, leaseToken: o.leaseToken, newToken: o.newToken ?? o.leaseToken, writerLive: o.writerLive, blockSize }, log);

  const storageClass = o.storageClass ?? volume.descriptor.storageClass;
  const s3 = new S3BlockStore({ blockSize, blockCount, readOnly, put: { storageClass, sse: volume.descriptor.sse } }, volume.bucket, volume.keys, log);
  const zeroMap = new ZeroMapStore(DEFAULT_ZERO_MAP_CONFIG, s3, { db, log });
  await zeroMap.load(
    {
      // Next to a live writer the persisted map is never reused, nor left reusable (see setToken below).
      token: o.writerLive ? undefined : (o.leaseToken ?? undefined),
      list: async function* (after?: number) {
        for await (const page of storedBlocks(volume.bucket, volume.keys, after === undefined ? undefined : volume.keys.key(after))) {
          yield page.flatMap((b) => (b.index !== undefined && b.index < blockCount ? [b.index] : []));
        }
      },
    },
    // A big volume takes a LIST page per 1000 stored blocks (0.1-0.5 s each): serve once the first is in.
    { background: true },
  );
  // Only a writer changes what the next mount must trust; other modes keep the token they loaded with.
  if (o.mode === 'read-write') zeroMap.setToken(o.newToken ?? undefined);
  const guard = new GuardStore(DEFAULT_GUARD_CONFIG, zeroMap, { db, log });
  // The cache sits above the prefetch layer: read-ahead skips what it already holds.
  let cache: CacheStore | undefined;
  const prefetch = new PrefetchStore(DEFAULT_PREFETCH_CONFIG, guard, { log, skip: (i) => cache?.holds(i) ?? false });
  // One pool of block buffers for both: a fill is handed a read-ahead's buffer, not a copy of it.
  cache = new CacheStore({ ...DEFAULT_CACHE_CONFIG, ...o.cacheBytes, readOnly }, prefetch, { db, log, fillBuffers: prefetch.buffers });
  try {
    await cache.start();
  } catch (err) {
    await cache.close().catch(() => {});
    throw err;
  }
  // Reads of a block the overlay holds must come to it: the cache's direct reads of its
  // own copy stop (revoke) before the overlay's first write of it, and are not granted again.
  let direct: DirectReads | undefined;
  const overlay =
    o.mode === 'overlay' ? new OverlayStore({}, cache, { db, log, rebooted: cache.rebooted, shadow: (i) => direct?.revoke(i) }) : undefined;
  // Hydration holds back while a reader waits on S3 (hydrate.ts).
  const hydrator = new Hydrator(cache, zeroMap, { log, foregroundIdleMs: () => prefetch.foregroundIdleMs });
  const top: BlockStore = overlay ?? cache;

  return {
    top: withClose(top, () => hydrator.stop()),
    startHydration: () => hydrator.start(),
    useDirectReads: (table: DirectReads) => {
      direct = table;
      cache.useDirectReads(overlay === undefined ? table : { ...bind(table), grant: (i) => !overlay.shadows(i) && table.grant(i) });
    },
    stats: () => {
      const b = volume.bucket.stats;
      const c = cache.stats;
      const z = zeroMap.stats;
      return {
        s3: { get: b.get, put: b.put, delete: b.delete, list: b.list, head: b.head, bytesIn: b.bytesIn, bytesOut: b.bytesOut, retries: b.retries, stale: guard.stats.stale, corrupt: s3.stats.corrupt },
        cache: { hit: c.hit, miss: c.miss, blocks: c.blocks, bytes: c.bytes, evictions: c.evictions, corrupt: c.corrupt, uploads: c.uploads, uploadErrors: c.uploadErrors, replayed: c.replayed, localErrors: c.localErrors, slices: c.slices, fromFetch: c.fromFetch },
        dirtyBlocks: c.dirtyBlocks,
        dirtyBytes: c.dirtyBlocks * blockSize,
        inflight: c.inflight,
        hydration: hydrator.stats,
        zeroMap: { stored: z.stored, zeroReads: z.zeroReads, loadedFrom: z.loadedFrom, listPages: z.listPages, listing: z.listing, unlistedReads: z.unlistedReads },
        prefetch: { ...prefetch.stats },
        overlay: overlay ? { ...overlay.stats } : null,
        requestCostUsd: requestCost(storageClass, b),
      };
    },
  };
}

/** The table's methods, bound, to wrap one of them. */
function bind(t: DirectReads): DirectReads {
  return { file: t.file.bind(t), grant: t.grant.bind(t), revoke: t.revoke.bind(t), touched: t.touched.bind(t), disable: t.disable.bind(t) };
}

/** The top store as it is (ranges included, when it takes them), with something to do before it closes. */
function withClose(top: BlockStore, before: () => void): BlockStore {
  const close = async (): Promise<void> => {
    before();
    await top.close();
  };
  const base = { blockSize: top.blockSize, blockCount: top.blockCount, read: top.read.bind(top), write: top.write.bind(top), flush: top.flush.bind(top), close };
  if (!isRangeStore(top)) return base;
  const ranged: RangeStore = { ...base, readRange: top.readRange.bind(top), writeRange: top.writeRange.bind(top) };
  if (top.replyRange !== undefined) ranged.replyRange = top.replyRange.bind(top);
  return ranged;
}
