// The write lease: which mount holds the volume read-write, until when. One
// writer at a time: a read-write mount takes it and renews it; a live lease
// held by another refuses the mount unless --force, and a live lease of another
// process on this host refuses it even then (that mount is not gone).
//
// On S3 the lease is a series of generation objects `<prefix>/leases/<gen>`
// (gen zero-padded, so keys sort by gen); the current lease is the highest gen.
// A volume made before generations has only `<prefix>/lease`: it reads as gen 0.
//   take     read the current gen n; if free (or dead, or --force) create gen
//            n+1 with `If-None-Match: *`. The server lets exactly one taker
//            create n+1 (AWS S3, Ceph RGW); the rest get 412 and are refused
//            with the winner's name. The same create is then sent again: a 412
//            proves the server enforces the condition. Where it does not
//            (s3rver), a pause catches a simultaneous taker, and the lease is only
//            best-effort. Last, a read-back: the highest gen must carry our token
//            (it also refuses a stalled taker whose gen was already cleaned up).
//   renew    only the holder writes its own gen (unconditionally), and only
//            while no higher gen exists; a higher one means it was taken (--force).
//   release  the holder rewrites its gen with an expiry in the past, keeping
//            its token, so the next mount can tell that nobody wrote since (the
//            zero map it persisted is still right).
// Invariants: the highest gen is never deleted (a winner deletes only gens below
// its own, and the legacy object), so the highest gen never goes down and a gen
// once superseded can never become current again; a conditional create of n+1
// that succeeds after n+1 was cleaned up always loses its read-back.
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { S3Bucket } from '../s3/bucket.js';
import { formatS3Url, keyUnder, type S3Location } from '../s3/url.js';
import { md5 } from '../store/checksum.js';
import { processAlive } from '../util/process.js';

/** The lease object of volumes made before generations (read as gen 0, deleted by the next taker). */
export const LEGACY_LEASE_NAME = 'lease';
/** Folder of the generation objects, under the volume's prefix. */
export const LEASES_DIR = 'leases/';
const GEN_DIGITS = 12;

export interface Lease {
  readonly holder: string;
  readonly token: string;
  readonly expires: string;
  /** Where the holder runs, so a mount on the same host can tell a dead holder from a live one. */
  readonly host?: string;
  readonly pid?: number;
}

/** The current generation: its number (0 for the legacy object or none) and its lease (null if none or unreadable). */
export interface CurrentLease {
  readonly gen: number;
  readonly lease: Lease | null;
  /** Every generation listed, lowest first (the legacy object is not one). */
  readonly gens: readonly number[];
  /** True when the current lease is the legacy `<prefix>/lease` object. */
  readonly legacy: boolean;
}

export function leaseKey(loc: S3Location, gen: number): string {
  return keyUnder(loc, LEASES_DIR + String(gen).padStart(GEN_DIGITS, '0'));
}

function genOf(key: string, dir: string): number | undefined {
  if (!key.startsWith(dir)) return undefined;
  const tail = key.slice(dir.length);
  return /^\d+$/.test(tail) ? Number(tail) : undefined;
}

/** Generations present, lowest first; with `above`, only those higher than it. */
export async function listGenerations(bucket: S3Bucket, loc: S3Location, above?: number): Promise<number[]> {
  const dir = keyUnder(loc, LEASES_DIR);
  const gens: number[] = [];
  for await (const page of bucket.list(dir, above === undefined ? undefined : leaseKey(loc, above))) {
    for (const o of page) {
      const g = genOf(o.key, dir);
      if (g !== undefined && (above === undefined || g > above)) gens.push(g);
    }
  }
  return gens.sort((a, b) => a - b);
}

function parseLease(body: Buffer): Lease | null {
  try {
    const lease = JSON.parse(body.toString('utf8')) as Partial<Lease>;
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One generation's lease; undefined when the object is gone, null when it is unreadable. */
async function readGen(bucket: S3Bucket, loc: S3Location, gen: number): Promise<Lease | null | undefined> {
  // s3rver's overwrites are not atomic: a GET racing the holder's renewal can
  // return a torn body, so an unreadable lease is read again before it counts.
  for (let attempt = 0; ; attempt++) {
    const obj = await bucket.get(leaseKey(loc, gen));
    if (obj === null) return undefined;
    const lease = parseLease(obj.body);
    if (lease !== null || attempt >= 2) return lease;
    await sleep(50);
  }
}

/** The highest generation and its lease, live or not. */
export async function readCurrentLease(bucket: S3Bucket, loc: S3Location): Promise<CurrentLease> {
  for (let attempt = 0; ; attempt++) {
    const gens = await listGenerations(bucket, loc);
    const gen = gens.at(-1);
    if (gen === undefined) {
      const obj = await bucket.get(keyUnder(loc, LEGACY_LEASE_NAME));
      return { gen: 0, lease: obj === null ? null : parseLease(obj.body), gens, legacy: obj !== null };
    }
    const lease = await readGen(bucket, loc, gen);
    if (lease !== undefined) return { gen, lease, gens, legacy: false };
    // Listed, then gone: a newer winner cleaned it up, so a higher gen exists now.
    if (attempt >= 4) throw new S3zError('ES3', `${formatS3Url(loc)}: the lease keeps changing under this reader (generation ${gen} vanished)`);
  }
}

/** The current lease object as stored, live or not; null when there is none or it is unreadable. */
export async function readLeaseObject(bucket: S3Bucket, loc: S3Location): Promise<Lease | null> {
  return (await readCurrentLease(bucket, loc)).lease;
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

/** True for a lease taken by another process of this host that still runs. */
export function heldByLiveProcessHere(lease: Lease): boolean {
  if (lease.host !== hostname() || lease.pid === undefined || lease.pid === process.pid) return false;
  return processAlive(lease.pid);
}

/** Every lease object of a volume (generations and the legacy one), for `erase`. */
export async function deleteAllLeases(bucket: S3Bucket, loc: S3Location): Promise<void> {
  const dir = keyUnder(loc, LEASES_DIR);
  for await (const page of bucket.list(dir)) await bucket.deleteMany(page.map((o) => o.key));
  await bucket.delete(keyUnder(loc, LEGACY_LEASE_NAME));
}

export interface LeaseOptions {
  readonly holder: string;
  readonly ttlMs: number;
  readonly force: boolean;
  /** Pause before reading the lease back, to catch a simultaneous taker where conditions are ignored. */
  readonly settleMs: number;
}

export class LeaseHolder {
  readonly token = randomUUID();
  /** The token of the lease found before this one was taken (null if none). */
  readonly previousToken: string | null;
  /** The generation this holder owns. */
  readonly gen: number;
  #bucket: S3Bucket;
  #loc: S3Location;
  #opts: LeaseOptions;
  #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  /** Set once a higher generation was seen: this holder never writes again. */
  #superseded = false;
  #takenBy: string | null = null;

  private constructor(bucket: S3Bucket, loc: S3Location, opts: LeaseOptions, gen: number, previousToken: string | null, log: Logger) {
    this.#bucket = bucket;
    this.#loc = loc;
    this.#opts = opts;
    this.gen = gen;
    this.previousToken = previousToken;
    this.#log = log.child({ layer: 'lease', gen });
  }

  static async acquire(bucket: S3Bucket, loc: S3Location, opts: LeaseOptions, log: Logger): Promise<LeaseHolder> {
    const url = formatS3Url(loc);
    const current = await readCurrentLease(bucket, loc);
    const found = current.lease;
    if (isLive(found) && heldByDeadProcess(found)) {
      // A crashed mount on this host: its lease is stale, and its journal is replayed by this mount.
      log.warn({ holder: found.holder }, 'taking over the write lease: the process that held it is gone');
    } else if (isLive(found) && heldByLiveProcessHere(found)) {
      // --force is for a mount that is gone; this one runs here, and would go on writing.
      throw new S3zError('ELEASE', `${url} is mounted read-write by ${found.holder}, which still runs on this host: unmount it first (--force only breaks the lease of a mount that is gone)`);
    } else if (isLive(found) && !opts.force) {
      throw new S3zError('ELEASE', `${url} is mounted read-write by ${found.holder} (lease until ${found.expires}); unmount it there, or pass --force if that mount is gone`);
    } else if (isLive(found)) {
      log.warn({ holder: found.holder }, 'breaking a live lease (--force)');
    }
    const holder = new LeaseHolder(bucket, loc, opts, current.gen + 1, found?.token ?? null, log);
    let enforced: boolean;
    try {
      enforced = await holder.#create();
    } catch (err) {
      if (!(err instanceof S3zError && err.code === 'EVOLUMEEXISTS')) throw err;
      // 412: another taker created this generation first. A retried PUT whose
      // first attempt landed also gets 412, so check whose it is.
      const taken = (await readGen(bucket, loc, holder.gen)) ?? (await readCurrentLease(bucket, loc)).lease;
      if (taken?.token !== holder.token) throw raced(url, taken);
      enforced = true;
    }
    // Only where the server may have let a simultaneous taker overwrite our generation.
    if (!enforced) await sleep(opts.settleMs);
    const now = await readCurrentLease(bucket, loc);
    if (now.lease?.token !== holder.token) throw raced(url, now.lease);
    await holder.#cleanUp(now, current.legacy);
    holder.#timer = setInterval(() => void holder.#renew(), Math.max(1000, opts.ttlMs / 3));
    holder.#timer.unref();
    return holder;
  }

  /** Deletes the generations below ours and the legacy object; best effort, the next winner tries again. */
  async #cleanUp(now: CurrentLease, legacyFound: boolean): Promise<void> {
    const below = now.gens.filter((g) => g < this.gen).map((g) => leaseKey(this.#loc, g));
    try {
      if (below.length > 0) await this.#bucket.deleteMany(below);
      if (legacyFound) await this.#bucket.delete(keyUnder(this.#loc, LEGACY_LEASE_NAME));
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not delete old lease generations');
    }
  }

  /** False (and logged once) when a higher generation exists: the lease was taken from this holder. */
  async #stillCurrent(): Promise<boolean> {
    if (this.#superseded) return false;
    const higher = await listGenerations(this.#bucket, this.#loc, this.gen);
    const top = higher.at(-1);
    if (top === undefined) return true;
    this.#superseded = true;
    clearInterval(this.#timer);
    const taker = await readGen(this.#bucket, this.#loc, top).catch(() => null);
    this.#takenBy = taker?.holder ?? 'another mount';
    this.#log.error({ holder: taker?.holder ?? 'unknown', takenAt: top }, 'the lease was taken by another mount (--force?); two writers now share this volume');
    return false;
  }

  /** Who took the lease from this holder (--force elsewhere), once seen; null while it holds it. */
  get takenBy(): string | null {
    return this.#takenBy;
  }

  async #renew(): Promise<void> {
    try {
      if (await this.#stillCurrent()) await this.#write(Date.now() + this.#opts.ttlMs, false);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'could not renew the lease');
    }
  }

  /** Stops renewing and leaves an expired lease that keeps this token. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    if (!(await this.#stillCurrent())) return; // someone else holds it now: leave theirs
    await this.#write(Date.now() - 1, false);
  }

  /**
   * Creates this holder's generation with `If-None-Match: *`, then asks the same
   * again: a server that enforces the condition answers the second with 412, which
   * proves that nobody else can have created it (true: no pause is needed before the
   * read-back). A server that ignores it overwrites our generation with our own lease
   * again, and a taker that wrote it in between loses its read-back (false).
   */
  async #create(): Promise<boolean> {
    await this.#write(Date.now() + this.#opts.ttlMs, true);
    try {
      await this.#write(Date.now() + this.#opts.ttlMs, true);
    } catch (err) {
      if (err instanceof S3zError && err.code === 'EVOLUMEEXISTS') return true;
      throw err;
    }
    this.#log.debug('the server ignores If-None-Match: pausing before the read-back');
    return false;
  }

  async #write(expires: number, ifAbsent: boolean): Promise<void> {
    const lease: Lease = { holder: this.#opts.holder, token: this.token, expires: new Date(expires).toISOString(), host: hostname(), pid: process.pid };
    const body = Buffer.from(JSON.stringify(lease) + '\n');
    await this.#bucket.put(leaseKey(this.#loc, this.gen), body, { md5: md5(body), contentType: 'application/json', ifAbsent });
  }
}

function raced(url: string, winner: Lease | null): S3zError {
  const who = winner?.holder ?? 'another mount';
  return new S3zError('ELEASE', `${url} is mounted read-write by ${who}, which took the lease at the same time as this mount${winner ? ` (lease until ${winner.expires})` : ''}`);
}
