// `erase`: deletes every object of a volume. Blocks go first, then the lease
// (its generations and the legacy object) and a leftover class probe, and the descriptor last, so an
// erase cut short leaves a volume that `erase` can finish. The blocks' LIST runs in
// the background (BackgroundListing): deletes start at its first page, and the
// progress display gets the totals when the pass ends. Without a descriptor, the
// same pass clears leftovers, which `create` refuses to adopt.
import { S3zError } from '../errors.js';
import type { ProgressDisplay } from '../progress-display.js';
import { keyUnder } from '../s3/url.js';
import { DESCRIPTOR_NAME } from './descriptor.js';
import { BackgroundListing } from './inventory.js';
import { BlockKeys } from './keys.js';
import { deleteAllLeases, heldByLiveProcessHere, LEASES_DIR, LEGACY_LEASE_NAME, readLease } from './lease.js';
import { PROBE_NAME } from './storage.js';
import type { VolumeRef } from './volume.js';

/** What erase needs of a volume: no descriptor, so that it can also clear what a lost one left. */
export type Erasable = VolumeRef & { readonly keys: BlockKeys };

/**
 * Whether a volume's other objects than its descriptor are at `ref`: block objects,
 * leases. With no descriptor they are leftovers (an erase cut short, or one run while
 * a mount still wrote), which a volume created there would take as its own.
 * Costs two LIST requests and a HEAD.
 */
export async function leftoverObjects(ref: VolumeRef): Promise<{ blocks: boolean; leases: boolean }> {
  const some = async (prefix: string): Promise<boolean> => {
    for await (const page of ref.bucket.list(prefix)) if (page.length > 0) return true;
    return false;
  };
  const [blocks, leases] = await Promise.all([
    some(new BlockKeys(ref.loc).prefix),
    some(keyUnder(ref.loc, LEASES_DIR)).then(async (found) => found || (await ref.bucket.head(keyUnder(ref.loc, LEGACY_LEASE_NAME))) !== null),
  ]);
  return { blocks, leases };
}

export async function eraseVolume(vol: Erasable, opts: { force: boolean; progress?: ProgressDisplay }): Promise<{ deleted: number }> {
  const lease = await readLease(vol.bucket, vol.loc);
  if (lease && heldByLiveProcessHere(lease)) {
    // It would go on writing blocks into the erased volume's place.
    throw new S3zError('ELEASE', `${vol.url}: mounted read-write by ${lease.holder}, which still runs on this host: unmount it first`);
  }
  if (lease && !opts.force) {
    throw new S3zError('ELEASE', `${vol.url}: mounted read-write by ${lease.holder} (lease until ${lease.expires}); unmount it first, or pass --force if that mount is gone`);
  }
  let deleted = 0;
  const stored = new BackgroundListing(vol.bucket, vol.keys);
  await stored.walkWith(opts.progress, async () => {
    // Page by page; the listing keeps at most KEEP_LISTED keys waiting, so memory stays
    // bounded however large the volume.
    for await (const page of stored.pages()) {
      await vol.bucket.deleteMany(page.map((o) => o.key));
      deleted += page.length;
      opts.progress?.tick(page.length, page.reduce((n, o) => n + o.size, 0));
    }
  });
  await deleteAllLeases(vol.bucket, vol.loc);
  await vol.bucket.delete(keyUnder(vol.loc, PROBE_NAME));
  await vol.bucket.delete(keyUnder(vol.loc, DESCRIPTOR_NAME));
  return { deleted };
}
