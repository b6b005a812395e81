// The local LMDB environment of one volume (one folder per volume uuid under the
// cache directory). Several layers keep state here, each in its own named table:
//   local    index -> kind + checksum                   which blocks the cache holds in its files:
//                                                       clean + SHA-256, dirty + CRC-32 per segment, or zeros
//   dirty    index -> write sequence                    the write-back journal (cache layer)
//   blocks   index -> crc32 + block data                cache format 1 (whole blocks in LMDB): migrated, then empty
//   overlay  index -> kind + CRC-32 per segment, or zeros  overlay writes, their bytes in the overlay's files
//                                                       (earlier builds: sha256 + data, or 32 zero bytes; moved at first use)
//   zmap     chunk -> bitmap                            which blocks exist in S3 (zero map layer)
//   guard    index -> { sum, until }                    read-after-write expectations (guard layer)
//   meta     string -> JSON                             geometry, lease token, zero-map validity, boot id, cache format
// Invariants: the folder belongs to one volume (meta.volume holds its uuid and
// geometry; a mismatch refuses to open); one daemon at a time (pid file).
// Durability (openForMount): read-write and read-only mounts commit without syncing
// to disk. A kill -9 loses nothing (the kernel keeps every commit), and nothing the
// cache holds needs to outlive a restart of the machine: flushed writes are in S3,
// and unflushed ones may be lost (ZFS tolerates it). Such a session leaves a marker
// with the boot id until it closes cleanly (synced); found after a restart, the
// folder may be inconsistent, so its database and block files are dropped before
// anything opens them. A folder holding overlay writes (local-only data) always
// syncs every commit.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, realpathSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { S3zError } from '../errors.js';
import { processAlive } from '../util/process.js';
import { bootId } from './cache-recovery.js';
import { committing } from './commit-failure.js';
import { slabDir } from './slab-file.js';
import { Table } from './table.js';

/** How long close() waits for lmdb-js to close the environment (see close()). */
const CLOSE_WAIT_MS = 5000;

/**
 * Folders whose environment this process has open. LMDB forbids opening one environment
 * twice in a process: the second open's first write waits on the write lock, which the
 * first one's lmdb-js writer thread holds while it waits for this (now blocked) thread,
 * so the process hangs for good (seen as a test that reopened a cache without closing it).
 */
const openHere = new Set<string>();

/** Left in the folder while commits may not be on disk; holds the boot id. */
const UNSYNCED_MARKER = 'unsynced';

export interface VolumeIdentity {
  readonly uuid: string;
  readonly size: number;
  readonly blockSize: number;
}

export interface GuardEntry {
  /** Expected sha256 (base64) of the block, or null when it must be absent. */
  readonly sum: string | null;
  /** ms since epoch after which the expectation is dropped. */
  readonly until: number;
}

export class LocalDb {
  readonly dir: string;
  readonly local: Table<Buffer, number>;
  /** Cache format 1's whole-block table: read once to migrate, then empty. */
  readonly legacyBlocks: Table<Buffer, number>;
  readonly dirty: Table<number, number>;
  readonly overlay: Table<Buffer, number>;
  readonly zmap: Table<Buffer, number>;
  readonly guard: Table<GuardEntry, number>;
  readonly meta: Table<unknown, string>;
  /** True when openForMount dropped the folder's contents: the machine restarted under an unsynced session. */
  resetAfterRestart = false;
  #root: RootDatabase;
  #pidFile: string;
  /** Set while commits are not synced: the marker to remove once they are. */
  #unsynced: string | undefined;
  #closed = false;
  /** This folder in `openHere` while open. */
  #key = '';

  private constructor(dir: string, root: RootDatabase, pidFile: string, unsynced?: string) {
    this.dir = dir;
    this.#root = root;
    this.#pidFile = pidFile;
    this.#unsynced = unsynced;
    const bin = { encoding: 'binary' as const };
    this.local = new Table(root.openDB<Buffer, number>({ name: 'local', ...bin }));
    this.legacyBlocks = new Table(root.openDB<Buffer, number>({ name: 'blocks', ...bin }));
    this.dirty = new Table(root.openDB<number, number>({ name: 'dirty', encoding: 'msgpack' }));
    this.overlay = new Table(root.openDB<Buffer, number>({ name: 'overlay', ...bin }));
    this.zmap = new Table(root.openDB<Buffer, number>({ name: 'zmap', ...bin }));
    this.guard = new Table(root.openDB<GuardEntry, number>({ name: 'guard', encoding: 'msgpack' }));
    this.meta = new Table(root.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' }));
  }

  /** Opens (creating if needed) the database of `volume` in `dir`; refuses another volume's folder or a live daemon's. */
  static open(dir: string, volume: VolumeIdentity): LocalDb {
    return LocalDb.#open(dir, volume, undefined);
  }

  /**
   * The daemon's open. `fast`: commits are not synced (see the top of this file), unless
   * the folder holds overlay writes. First, a folder left by an unsynced session is dropped
   * if the machine restarted since, or synced if it did not.
   */
  static async openForMount(dir: string, volume: VolumeIdentity, fast: boolean): Promise<LocalDb> {
    const marker = path.join(dir, UNSYNCED_MARKER);
    const left = readMarker(marker);
    let reset = false;
    if (left !== undefined && left !== bootId()) {
      rmSync(path.join(dir, 'db'), { recursive: true, force: true });
      rmSync(slabDir(dir), { recursive: true, force: true });
      reset = true;
    }
    let db = LocalDb.#open(dir, volume, undefined);
    try {
      if (left !== undefined) {
        await db.#sync(); // what a killed session left in the page cache is on disk from here
        rmSync(marker, { force: true });
      }
      if (fast && db.overlay.getCount() === 0) {
        await db.close();
        writeMarker(dir, marker);
        db = LocalDb.#open(dir, volume, marker);
      }
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
    db.resetAfterRestart = reset;
    return db;
  }

  static #open(dir: string, volume: VolumeIdentity, unsynced: string | undefined): LocalDb {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const key = realpathSync(dir);
    if (openHere.has(key)) throw new S3zError('EMOUNT', `cache ${dir} is already open in this process (close it before opening it again)`);
    const pidFile = path.join(dir, 'daemon.pid');
    const other = readPid(pidFile);
    if (other !== undefined && other !== process.pid && processAlive(other)) {
      throw new S3zError('EMOUNT', `cache ${dir} is in use by process ${other} (another mount of this volume?)`);
    }
    writeFileSync(pidFile, `${process.pid}\n`);
    // eventTurnBatching off: with it, a commit that fails (a full disk) also rejects a batch
    // promise lmdb-js keeps to itself, and that unhandled rejection would end the process.
    // Measured: the same write throughput either way.
    const root = open({ path: path.join(dir, 'db'), maxDbs: 16, compression: false, eventTurnBatching: false, ...(unsynced !== undefined ? { noSync: true } : {}) });
    const db = new LocalDb(dir, root, pidFile, unsynced);
    const known = db.meta.get('volume') as VolumeIdentity | undefined;
    if (known === undefined) {
      db.meta.putSync('volume', { uuid: volume.uuid, size: volume.size, blockSize: volume.blockSize });
    } else if (known.uuid !== volume.uuid || known.size !== volume.size || known.blockSize !== volume.blockSize) {
      void root.close();
      rmSync(pidFile, { force: true });
      throw new S3zError('EMOUNT', `cache ${dir} belongs to volume ${known.uuid}, not ${volume.uuid}: pick another --cache-dir`);
    }
    db.#key = key;
    openHere.add(key);
    return db;
  }

  /** Runs `fn`'s puts and removes, across tables, as one transaction; resolves once committed. */
  transaction<T>(fn: () => T): Promise<T> {
    return committing(this.#root.transaction(fn));
  }

  /**
   * Queues the async puts and removes `fn` makes (their own promises need no handling)
   * as one atomic group; resolves once committed, rejects if the commit fails. Unlike
   * transaction(), `fn` runs now, so it cannot read what the commit will see; but no
   * hop to lmdb-js's write thread and back comes before the commit: measured on the
   * cache's write journal, zfs-fuse's writes took 15% less time (docs/PERFORMANCE.md).
   */
  batch(fn: () => void): Promise<unknown> {
    return committing(this.#root.batch(fn));
  }

  /**
   * Resolves once every commit so far is on disk. Commits resolve when they are
   * visible, which a kill -9 keeps; lmdb-js syncs them afterwards (overlappingSync),
   * and a restart of the machine may undo those not yet synced. A folder that commits
   * without syncs has nothing to wait for: a restart drops it whole.
   *
   * Not lmdb-js's `flushed`: after a commit that failed (a full disk), it stays rejected
   * (without syncs) or pending (with them) until another commit succeeds, which would
   * hold every upload back, or forever.
   *
   * Rejects (ECLOSED) once close() has begun: the sync would run on a freed environment
   * (a crash of the process, seen when an upload outlived its database).
   */
  durable(): Promise<unknown> {
    if (this.#closed) return Promise.reject(new S3zError('ECLOSED', `the cache database in ${this.dir} is closed`));
    return this.#unsynced !== undefined ? Promise.resolve() : this.#sync();
  }

  /** Resolves when every write so far is committed. */
  committed(): Promise<unknown> {
    // lmdb-js leaves it undefined when nothing is pending.
    return committing(Promise.resolve(this.#root.committed));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the environment; later calls do nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Every commit that succeeded is on disk after this, whatever lmdb-js still waits for.
    const synced = await this.#sync().then(
      () => true,
      () => false,
    );
    // lmdb-js's close waits for the last commit's sync, which never comes if that commit
    // failed (a full disk) and none succeeded since: bounded, the process goes on.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#root.close(), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
    // Only once synced: a marker that stays makes the next mount after a restart start afresh.
    if (this.#unsynced !== undefined && synced) rmSync(this.#unsynced, { force: true });
    rmSync(this.#pidFile, { force: true });
    openHere.delete(this.#key);
  }

  /** Every commit so far on disk (mdb_env_sync), whatever the flags. */
  #sync(): Promise<void> {
    // lmdb-js has it (env.sync: mdb_env_sync with force) but does not declare it.
    const root = this.#root as unknown as { sync(done: (err?: unknown) => void): void };
    return new Promise((resolve, reject) => root.sync((err?: unknown) => (err ? reject(err as Error) : resolve())));
  }
}

function readMarker(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Writes the marker durably (the file, then its folder's entry) before any unsynced commit. */
function writeMarker(dir: string, file: string): void {
  writeFileSync(file, `${bootId()}\n`);
  for (const p of [file, dir]) {
    const fd = openSync(p, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

