// Hydration: pulls every stored block of the volume into the local cache in the
// background, at low priority, so that a restored volume stops depending on S3.
//
// States (per run; `runs` counts the runs started in this mount):
//   idle     no run yet
//   running  a sweep over the zero map's stored blocks, `concurrency` at a time
//   done     every block the sweep saw is local
//   failed   a block could not be fetched after the S3 layer's retries, or the
//            mount stopped; `error` says which. Another start() begins a new run.
// Starting while running does nothing: `s3zmount hydrate` and `mount --hydrate`
// join the run in progress and watch the same counters (the stats file's
// `hydration` section).
//
// Invariants:
//   - reads go through the cache with priority 'background': the prefetch layer
//     does not let them steer read-ahead, and only `concurrency` (4) of them are
//     in flight, so foreground reads keep the S3 connections (64) and never queue
//     behind them;
//   - a block the cache already holds costs no request (`local`), so a run after a
//     remount of the same cache dir fetches only what is missing;
//   - memory is bounded: the sweep walks the zero map's bitmaps, it never lists them.
import pMap from 'p-map';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { CacheStore } from '../store/cache.js';
import type { ZeroMapStore } from '../store/zero-map.js';

export type HydrationState = 'idle' | 'running' | 'done' | 'failed';

/** The stats file's `hydration` section (DESIGN §5: `done` and `total` are the contract's). */
export interface HydrationStats {
  state: HydrationState;
  /** Runs started in this mount; `s3zmount hydrate` waits for it to grow after asking. */
  runs: number;
  /** Blocks of this run that are local now, out of `total` stored blocks. */
  done: number;
  total: number;
  bytesDone: number;
  bytesTotal: number;
  /** Of `done`: blocks that were local already, and blocks fetched from S3. */
  local: number;
  fetched: number;
  /** Bytes fetched per second since the run started. */
  bytesPerSecond: number;
  startedAt: string | null;
  finishedAt: string | null;
  /** Why the run failed (state 'failed'), with the error's stable code. */
  error: string | null;
  errorCode: string | null;
}

export class Hydrator {
  readonly #stats: HydrationStats = {
    state: 'idle', runs: 0, done: 0, total: 0, bytesDone: 0, bytesTotal: 0, local: 0, fetched: 0,
    bytesPerSecond: 0, startedAt: null, finishedAt: null, error: null, errorCode: null,
  };
  #cache: CacheStore;
  #zeroMap: ZeroMapStore;
  #log: Logger;
  #stop = new AbortController();
  #running: Promise<void> | undefined;
  #startedMs = 0;
  #fetchedBytes = 0;

  constructor(cache: CacheStore, zeroMap: ZeroMapStore, log: Logger) {
    this.#cache = cache;
    this.#zeroMap = zeroMap;
    this.#log = log.child({ layer: 'hydrate' });
  }

  get stats(): HydrationStats {
    const s = this.#stats;
    if (s.state === 'running') {
      const seconds = (Date.now() - this.#startedMs) / 1000;
      s.bytesPerSecond = seconds > 0 ? Math.round(this.#fetchedBytes / seconds) : 0;
    }
    return { ...s };
  }

  /** Starts a run unless one is running or the mount is stopping. */
  start(concurrency = 4): void {
    if (this.#running !== undefined || this.#stop.signal.aborted) return;
    const bs = this.#cache.blockSize;
    const s = this.#stats;
    const total = this.#zeroMap.stats.stored;
    Object.assign(s, {
      state: 'running', runs: s.runs + 1, done: 0, total, bytesDone: 0, bytesTotal: total * bs, local: 0, fetched: 0,
      bytesPerSecond: 0, startedAt: new Date().toISOString(), finishedAt: null, error: null, errorCode: null,
    } satisfies HydrationStats);
    this.#startedMs = Date.now();
    this.#fetchedBytes = 0;
    const signal = this.#stop.signal;
    this.#log.info({ blocks: total }, 'hydration started');
    const sweep = pMap(
      this.#zeroMap.storedIndices(),
      async (index) => {
        if (this.#cache.holds(index)) s.local++;
        else {
          await this.#cache.hydrate(index, { priority: 'background', signal });
          s.fetched++;
          this.#fetchedBytes += bs;
        }
        s.done++;
        s.bytesDone += bs;
        // Blocks written since the run began may add to what the sweep finds.
        if (s.done > s.total) {
          s.total = s.done;
          s.bytesTotal = s.total * bs;
        }
      },
      { concurrency, signal },
    );
    this.#running = sweep.then(
      () => {
        this.#finish('done');
        this.#log.info(this.stats, 'hydration done');
      },
      (err: unknown) => {
        const stopped = signal.aborted;
        const message = stopped ? 'the mount is stopping' : (err as Error).message;
        this.#finish('failed', message, stopped ? 'EMOUNT' : err instanceof S3zError ? err.code : 'ES3');
        if (!stopped) this.#log.error({ err: message }, 'hydration stopped by an error');
      },
    );
  }

  stop(): void {
    this.#stop.abort();
  }

  #finish(state: 'done' | 'failed', error: string | null = null, errorCode: string | null = null): void {
    const seconds = (Date.now() - this.#startedMs) / 1000;
    Object.assign(this.#stats, {
      state, error, errorCode, finishedAt: new Date().toISOString(),
      bytesPerSecond: seconds > 0 ? Math.round(this.#fetchedBytes / seconds) : 0,
    });
    this.#running = undefined;
  }
}
