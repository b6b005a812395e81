// One named table of the local database, as the layers see it: lmdb-js's Database
// with every async write (put, remove, clearAsync) going through committing(), so a
// failed commit rejects with its reason (ENOSPACE on a full disk) and lmdb-js's own
// rejection is handled, whichever layer writes. A wrapper, not a patch of the
// Database's methods: lmdb-js calls its own put() inside putSync() and transactions
// and compares what it returns with a sentinel.
import type { Database, Key, RangeOptions } from 'lmdb';
import { committing } from './commit-failure.js';

export class Table<V, K extends Key> {
  readonly #db: Database<V, K>;

  constructor(db: Database<V, K>) {
    this.#db = db;
  }

  get(key: K): V | undefined {
    return this.#db.get(key);
  }

  getRange(options?: RangeOptions): ReturnType<Database<V, K>['getRange']> {
    return this.#db.getRange(options);
  }

  getKeys(options?: RangeOptions): ReturnType<Database<V, K>['getKeys']> {
    return this.#db.getKeys(options);
  }

  getCount(options?: RangeOptions): number {
    return this.#db.getCount(options);
  }

  /** In a batch() its promise settles with the batch's commit, which the batch reports. */
  put(key: K, value: V): Promise<boolean> {
    return settled(committing(this.#db.put(key, value)));
  }

  remove(key: K): Promise<boolean> {
    return settled(committing(this.#db.remove(key)));
  }

  clearAsync(): Promise<void> {
    return settled(committing(this.#db.clearAsync()));
  }

  /** Inside a transaction() it joins it; outside, it commits now and throws if that fails. */
  putSync(key: K, value: V): void {
    this.#db.putSync(key, value);
  }

  removeSync(key: K): boolean {
    return this.#db.removeSync(key);
  }
}

/**
 * `write`, marked handled: a put or remove inside a batch is left unawaited (the batch's
 * own promise reports the commit), and must not become an unhandled rejection there.
 * Whoever awaits `write` still sees it reject.
 */
function settled<T>(write: Promise<T>): Promise<T> {
  write.catch(() => undefined);
  return write;
}
