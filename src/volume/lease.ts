// The write lease, `<prefix>/lease`: who holds the volume read-write, until when.
// A lease whose expiry has passed is free. This file only reads it; taking,
// renewing and breaking it belong to the mount.
import type { S3Bucket } from '../s3/bucket.js';
import { keyUnder, type S3Location } from '../s3/url.js';

export const LEASE_NAME = 'lease';

export interface Lease {
  readonly holder: string;
  readonly token: string;
  readonly expires: string;
}

/** The live lease, or null when there is none or it has expired. */
export async function readLease(bucket: S3Bucket, loc: S3Location, now = Date.now()): Promise<Lease | null> {
  const obj = await bucket.get(keyUnder(loc, LEASE_NAME));
  if (obj === null) return null;
  let lease: Partial<Lease>;
  try {
    lease = JSON.parse(obj.body.toString('utf8')) as Partial<Lease>;
  } catch {
    return null;
  }
  if (typeof lease.holder !== 'string' || typeof lease.token !== 'string' || typeof lease.expires !== 'string') return null;
  const expires = Date.parse(lease.expires);
  return Number.isFinite(expires) && expires > now ? { holder: lease.holder, token: lease.token, expires: lease.expires } : null;
}
