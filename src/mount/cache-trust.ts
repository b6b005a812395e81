// Whether a cache dir may be trusted for the volume as S3 holds it now (DESIGN §3,
// "a cache is only as good as its proof").
//
// The proof is the lease token. Every read-write mount leaves its own token in the
// lease (kept when it is released), and the cache dir records, in meta.session, the
// token of the volume state its contents match. At mount:
//   - same token as the lease found: nobody wrote through another cache since; the
//     cache, its journal and its guards are current;
//   - another token (or none recorded, or a writer was live when it was recorded):
//     the volume may have changed behind this cache. Its clean blocks and its
//     read-after-write guards are dropped (they are refetched from S3 as needed);
//     a non-empty journal or overlay is refused, because uploading or serving it
//     would overwrite or shadow newer data.
// Then meta.session takes the token this mount leaves in the lease (a writer's own,
// or the one found), or is removed when a live writer may change blocks under this
// mount, so that the next mount does not trust what this one caches.
import { rmSync } from 'node:fs';
import { S3zError } from '../errors.js';
import { slabDir } from '../store/slab-file.js';
import type { Logger } from '../log.js';
import type { LocalDb } from '../store/local-db.js';
import { formatSize } from '../size.js';
import { counted } from '../util/words.js';

const SESSION_KEY = 'session';
const OVERLAY_BASE_KEY = 'overlayBase';

export interface TrustOptions {
  readonly mode: 'read-write' | 'read-only' | 'overlay';
  /** The lease token found at mount (a writer's previousToken); null when there was none. */
  readonly leaseToken: string | null;
  /** The token this mount leaves in the lease: a writer's own; otherwise leaseToken. */
  readonly newToken: string | null;
  /** A live writer holds the lease (a --force read-only or overlay mount): blocks may change under us. */
  readonly writerLive: boolean;
  readonly blockSize: number;
}

export interface TrustResult {
  readonly trusted: boolean;
  /** Clean blocks dropped because they could not be proven current. */
  readonly dropped: number;
}

interface Session {
  readonly token: string | null;
}

/** Checks the cache dir against the lease and drops what cannot be proven current. Runs before any layer opens. */
export async function validateCache(db: LocalDb, o: TrustOptions, log: Logger): Promise<TrustResult> {
  const session = db.meta.get(SESSION_KEY) as Session | undefined;
  const blocks = db.local.getCount() + db.legacyBlocks.getCount();
  const dirty = db.dirty.getCount();
  const overlay = db.overlay.getCount();
  const trusted = session !== undefined && session.token === o.leaseToken;

  if (!trusted && dirty > 0) {
    throw new S3zError(
      'EMOUNT',
      `cache ${db.dir} holds ${counted(dirty, 'block')} (${formatSize(dirty * o.blockSize)}) not yet in S3 from a mount that ended before the volume was written through another cache; ` +
        `uploading them would overwrite newer data, so they are not used: move or delete ${db.dir} to mount without them`,
    );
  }
  if (o.mode === 'overlay' && overlay > 0 && db.meta.get(OVERLAY_BASE_KEY) !== o.leaseToken) {
    throw new S3zError(
      'EMOUNT',
      `cache ${db.dir} holds overlay writes made on an older state of the volume (it was written since); ` +
        `they no longer fit it: delete ${db.dir} (or pick another --cache-dir) to start a fresh overlay`,
    );
  }

  let dropped = 0;
  if (!trusted && blocks + db.guard.getCount() > 0) {
    dropped = blocks;
    log.warn({ cache: db.dir, dropped }, 'the volume may have changed since this cache was used: dropping its cached blocks');
    // Nothing is dirty here (refused above): every local block goes, records and bytes.
    await db.local.clearAsync();
    await db.legacyBlocks.clearAsync();
    await db.guard.clearAsync();
    rmSync(slabDir(db.dir), { recursive: true, force: true });
  }
  if (o.mode === 'overlay' && overlay === 0) await db.meta.put(OVERLAY_BASE_KEY, o.leaseToken);
  if (o.writerLive) await db.meta.remove(SESSION_KEY);
  else await db.meta.put(SESSION_KEY, { token: o.newToken } satisfies Session);
  return { trusted, dropped };
}
