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

  put(key: K, value: V): Promise<boolean> {
    return committing(this.#db.put(key, value));
  }

  /**
   * A put inside LocalDb.batch(): the batch's own promise reports the commit, so this
   * one's is left alone (lmdb-js resolves it even when the commit fails). No wrapper on
   * the write journal's path, which runs once per FUSE write.
   */
  putInBatch(key: K, value: V): void {
    void this.#db.put(key, value);
  }

  remove(key: K): Promise<boolean> {
    return committing(this.#db.remove(key));
  }

  clearAsync(): Promise<void> {
    return committing(this.#db.clearAsync());
  }

  /** Inside a transaction() it joins it; outside, it commits now and throws if that fails. */
  putSync(key: K, value: V): void {
    this.#db.putSync(key, value);
  }

  removeSync(key: K): boolean {
    return this.#db.removeSync(key);
  }
}

