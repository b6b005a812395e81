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
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { homedir } from 'node:os';
import { open, type Database, type RootDatabase } from 'lmdb';
import { S3zError } from '../errors.js';
import { processAlive } from '../util/process.js';

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

export function defaultCacheRoot(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 's3zmount');
}

export class LocalDb {
  readonly dir: string;
  readonly local: Database<Buffer, number>;
  /** Cache format 1's whole-block table: read once to migrate, then empty. */
  readonly legacyBlocks: Database<Buffer, number>;
  readonly dirty: Database<number, number>;
  readonly overlay: Database<Buffer, number>;
  readonly zmap: Database<Buffer, number>;
  readonly guard: Database<GuardEntry, number>;
  readonly meta: Database<unknown, string>;
  #root: RootDatabase;
  #pidFile: string;
  #closed = false;

  private constructor(dir: string, root: RootDatabase, pidFile: string) {
    this.dir = dir;
    this.#root = root;
    this.#pidFile = pidFile;
    const bin = { encoding: 'binary' as const };
    this.local = root.openDB<Buffer, number>({ name: 'local', ...bin });
    this.legacyBlocks = root.openDB<Buffer, number>({ name: 'blocks', ...bin });
    this.dirty = root.openDB<number, number>({ name: 'dirty', encoding: 'msgpack' });
    this.overlay = root.openDB<Buffer, number>({ name: 'overlay', ...bin });
    this.zmap = root.openDB<Buffer, number>({ name: 'zmap', ...bin });
    this.guard = root.openDB<GuardEntry, number>({ name: 'guard', encoding: 'msgpack' });
    this.meta = root.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' });
  }

  /** Opens (creating if needed) the database of `volume` in `dir`; refuses another volume's folder or a live daemon's. */
  static open(dir: string, volume: VolumeIdentity): LocalDb {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const pidFile = path.join(dir, 'daemon.pid');
    const other = readPid(pidFile);
    if (other !== undefined && other !== process.pid && processAlive(other)) {
      throw new S3zError('EMOUNT', `cache ${dir} is in use by process ${other} (another mount of this volume?)`);
    }
    writeFileSync(pidFile, `${process.pid}\n`);
    // eventTurnBatching off: with it, a commit that fails (a full disk) also rejects a batch
    // promise lmdb-js keeps to itself, and that unhandled rejection would end the process.
    // Measured: the same write throughput either way.
    const root = open({ path: path.join(dir, 'db'), maxDbs: 16, compression: false, eventTurnBatching: false });
    const db = new LocalDb(dir, root, pidFile);
    const known = db.meta.get('volume') as VolumeIdentity | undefined;
    if (known === undefined) {
      db.meta.putSync('volume', { uuid: volume.uuid, size: volume.size, blockSize: volume.blockSize });
    } else if (known.uuid !== volume.uuid || known.size !== volume.size || known.blockSize !== volume.blockSize) {
      void root.close();
      rmSync(pidFile, { force: true });
      throw new S3zError('EMOUNT', `cache ${dir} belongs to volume ${known.uuid}, not ${volume.uuid}: pick another --cache-dir`);
    }
    return db;
  }

  /** Runs `fn`'s puts and removes, across tables, as one transaction; resolves once committed. */
  transaction<T>(fn: () => T): Promise<T> {
    return this.#root.transaction(fn);
  }

  /** Resolves when every write so far is committed. */
  committed(): Promise<unknown> {
    // lmdb-js leaves it undefined when nothing is pending.
    return Promise.resolve(this.#root.committed);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the environment; later calls do nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#root.close();
    rmSync(this.#pidFile, { force: true });
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

