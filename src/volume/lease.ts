// The write lease, `<prefix>/lease`: which mount holds the volume read-write, until
// when. One writer at a time: a read-write mount takes it and renews it; a live
// lease held by another refuses the mount unless --force. Releasing writes an
// expired lease that keeps the holder's token, so the next mount can tell that
// nobody wrote since (the zero map it persisted is still right).
// S3-compatible servers without conditional writes (s3rver) leave a race between
// two mounts taking the lease at the same instant: the taker reads its lease back
// after a pause and refuses if another token won.
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { S3Bucket } from '../s3/bucket.js';
import { formatS3Url, keyUnder, type S3Location } from '../s3/url.js';
import { md5 } from '../store/checksum.js';
import { processAlive } from '../util/process.js';

export const LEASE_NAME = 'lease';

export interface Lease {
  readonly holder: string;
  readonly token: string;
  readonly expires: string;
  /** Where the holder runs, so a mount on the same host can tell a dead holder from a live one. */
  readonly host?: string;
  readonly pid?: number;
}

/** The lease object as stored, live or not; null when there is none or it is unreadable. */
export async function readLeaseObject(bucket: S3Bucket, loc: S3Location): Promise<Lease | null> {
  const obj = await bucket.get(keyUnder(loc, LEASE_NAME));
  if (obj === null) return null;
  try {
    const lease = JSON.parse(obj.body.toString('utf8')) as Partial<Lease>;
    if (typeof lease.holder !== 'string' || typeof lease.token !== 'string' || typeof lease.expires !== 'string') return null;
    return {
      holder: lease.holder, token: lease.token, expires: lease.expires,
      ...(typeof lease.host === 'string' ? { host: lease.host } : {}),
      ...(typeof lease.pid === 'number' ? { pid: lease.pid } : {}),
    };
  } catch {
    return null;
  }
}

export function isLive(lease: Lease | null, now = Date.now()): lease is Lease {
  if (lease === null) return false;
  const expires = Date.parse(lease.expires);
  return Number.isFinite(expires) && expires > now;
}

/** The live lease, or null when there is none or it has expired. */
export async function readLease(bucket: S3Bucket, loc: S3Location, now = Date.now()): Promise<Lease | null> {
  const lease = await readLeaseObject(bucket, loc);
  return isLive(lease, now) ? lease : null;
}

export function describeHolder(mountpoint: string): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry: keep "unknown"
  }
  return `${user}@${hostname()} pid ${process.pid} on ${mountpoint}`;
}

/** True for a lease taken by a process of this host that no longer runs. */
export function heldByDeadProcess(lease: Lease): boolean {
  if (lease.host !== hostname() || lease.pid === undefined || lease.pid === process.pid) return false;
  return !processAlive(lease.pid);
}

export interface LeaseOptions {
  readonly holder: string;
  readonly ttlMs: number;
  readonly force: boolean;
  /** Pause before reading the lease back, to catch a simultaneous taker. */
  readonly settleMs: number;
}

export class LeaseHolder {
  readonly token = randomUUID();
  /** The token of the lease found before this one was taken (null if none). */
  readonly previousToken: string | null;
  #bucket: S3Bucket;
  #loc: S3Location;
  #opts: LeaseOptions;
  #log: Logger;
  #timer: NodeJS.Timeout | undefined;

  private constructor(bucket: S3Bucket, loc: S3Location, opts: LeaseOptions, previousToken: string | null, log: Logger) {
    this.#bucket = bucket;
    this.#loc = loc;
    this.#opts = opts;
    this.previousToken = previousToken;
    this.#log = log.child({ layer: 'lease' });
  }

  static async acquire(bucket: S3Bucket, loc: S3Location, opts: LeaseOptions, log: Logger): Promise<LeaseHolder> {
    const url = formatS3Url(loc);
    const found = await readLeaseObject(bucket, loc);
    if (isLive(found) && heldByDeadProcess(found)) {
      // A crashed mount on this host: its lease is stale, and its journal is replayed by this mount.
      log.warn({ holder: found.holder }, 'taking over the lease of a mount whose process is gone');
    } else if (isLive(found) && !opts.force) {
      throw new S3zError('ELEASE', `${url} is mounted read-write by ${found.holder} (lease until ${found.expires}); unmount it there, or pass --force if that mount is gone`);
    } else if (isLive(found)) {
      log.warn({ holder: found.holder }, 'breaking a live lease (--force)');
    }
    const holder = new LeaseHolder(bucket, loc, opts, found?.token ?? null, log);
    await holder.#write(Date.now() + opts.ttlMs);
    await new Promise((r) => setTimeout(r, opts.settleMs));
    const now = await readLeaseObject(bucket, loc);
    if (now?.token !== holder.token) {
      throw new S3zError('ELEASE', `${url}: another mount (${now?.holder ?? 'unknown'}) took the lease at the same time`);
    }
    holder.#timer = setInterval(() => void holder.#renew(), Math.max(1000, opts.ttlMs / 3));
    holder.#timer.unref();
    return holder;
  }

  async #renew(): Promise<void> {
    try {
      const now = await readLeaseObject(this.#bucket, this.#loc);
      if (now !== null && now.token !== this.token) {
        this.#log.error({ holder: now.holder }, 'the lease was taken by another mount (--force?); two writers now share this volume');
        return;
      }
      await this.#write(Date.now() + this.#opts.ttlMs);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'could not renew the lease');
    }
  }

  /** Stops renewing and leaves an expired lease that keeps this token. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    const now = await readLeaseObject(this.#bucket, this.#loc);
    if (now !== null && now.token !== this.token) return; // someone else holds it now: leave theirs
    await this.#write(Date.now() - 1);
  }

  async #write(expires: number): Promise<void> {
    const lease: Lease = { holder: this.#opts.holder, token: this.token, expires: new Date(expires).toISOString(), host: hostname(), pid: process.pid };
    const body = Buffer.from(JSON.stringify(lease) + '\n');
    await this.#bucket.put(keyUnder(this.#loc, LEASE_NAME), body, { md5: md5(body), contentType: 'application/json' });
  }
}
