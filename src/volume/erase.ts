// `erase`: deletes every object of a volume. Blocks go first, then the lease
// (its generations and the legacy object) and a leftover class probe, and the descriptor last, so an
// erase cut short leaves a volume that `erase` can finish. The blocks' LIST runs in
// the background (BackgroundListing): deletes start at its first page, and the
// progress display gets the totals when the pass ends.
import { S3zError } from '../errors.js';
import type { ProgressDisplay } from '../progress-display.js';
import { keyUnder } from '../s3/url.js';
import { DESCRIPTOR_NAME } from './descriptor.js';
import { BackgroundListing } from './inventory.js';
import { deleteAllLeases, readLease } from './lease.js';
import { PROBE_NAME } from './storage.js';
import type { Volume } from './volume.js';

export async function eraseVolume(vol: Volume, opts: { force: boolean; progress?: ProgressDisplay }): Promise<{ deleted: number }> {
  const lease = await readLease(vol.bucket, vol.loc);
  if (lease && !opts.force) {
    throw new S3zError('ELEASE', `${vol.url}: mounted read-write by ${lease.holder} (lease until ${lease.expires}); unmount it first, or pass --force`);
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
