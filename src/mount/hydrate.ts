// Hydration: pulls every stored block of the volume into the local cache in the
// background, at low priority, so that a restored volume stops depending on S3.
//
// States (per run; `runs` counts the runs started in this mount):
//   idle     no run yet
//   running  a sweep over the zero map's stored blocks, up to HYDRATE_CONCURRENCY
//            fetches at a time
//   done     every block the sweep saw is local
//   failed   a block could not be fetched after the S3 layer's retries, or the
//            mount stopped; `error` says which. Another start() begins a new run.
// Starting while running does nothing: `s3zmount hydrate` and `mount --hydrate`
// join the run in progress and watch the same counters (the stats file's
// `hydration` section).
//
// Invariants:
//   - reads go through the cache with priority 'background': the prefetch layer
//     does not let them steer read-ahead, and foreground reads go to S3 at once
//     (64 connections), never queued behind them;
//   - while a foreground read waits on S3, or did within HYDRATE_QUIET_MS, no fetch
//     starts unless fewer than HYDRATE_YIELD are in flight: a reader's GETs share the
//     link (and the server's queue) with at most a few of ours, once those in flight
//     when it began have landed;
//   - a block the cache already holds costs no request (`local`), so a run after a
//     remount of the same cache dir fetches only what is missing;
//   - memory is bounded: the sweep walks the zero map's bitmaps, it never lists them.
import { setTimeout as sleep } from 'node:timers/promises';
import { mapEach } from '../util/map-each.js';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { ReadOptions } from '../store/types.js';

/** Fetches in flight while no foreground read waits (measured, 512 MiB at 20 ms: 4 → 83–89 MB/s, 8 → 113–120, 16 → 131). */
export const HYDRATE_CONCURRENCY = 16;
/** Fetches in flight below which one may still start while a foreground read waits. */
export const HYDRATE_YIELD = 2;
/**
 * A reader that waited on S3 this recently is still reading: between its reads the sweep
 * stays at HYDRATE_YIELD. Measured (512 MiB at 20 ms, a 4 KiB read of an absent block
 * every ~50 ms): without it, the sweep refilled to 16 between reads and each read took
 * 100-115 ms (median) against 40-46 ms with no hydration running.
 */
export const HYDRATE_QUIET_MS = 1000;
/** How often a held-back fetch looks again: a foreground GET takes tens of ms. */
const YIELD_POLL_MS = 10;

/** What hydration pulls blocks into (the cache). */
export interface HydrationTarget {
  readonly blockSize: number;
  holds(index: number): boolean;
  hydrate(index: number, opts?: ReadOptions): Promise<void>;
}

/** Where the stored blocks are known (the zero map). */
export interface StoredBlocks {
  readonly stats: { readonly stored: number };
  /** Resolves once `stats.stored` and `storedIndices()` cover the whole volume (its LIST is done). */
  readonly listed: Promise<void>;
  storedIndices(): AsyncIterable<number>;
}

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
  #cache: HydrationTarget;
  #zeroMap: StoredBlocks;
  /** Milliseconds since a foreground read last waited on S3, 0 while one waits (the prefetch layer's). */
  #foregroundIdleMs: () => number;
  #log: Logger;
  /** Fetches of this mount's runs in flight now. */
  #fetching = 0;
  #stop = new AbortController();
  #running: Promise<void> | undefined;
  #startedMs = 0;
  #fetchedBytes = 0;

  constructor(cache: HydrationTarget, zeroMap: StoredBlocks, deps: { log: Logger; foregroundIdleMs: () => number }) {
    this.#cache = cache;
    this.#zeroMap = zeroMap;
    this.#foregroundIdleMs = deps.foregroundIdleMs;
    this.#log = deps.log.child({ layer: 'hydrate' });
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
  start(): void {
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
    const sweep = mapEach(
      this.#storedOnceListed(signal),
      async (index) => {
        if (this.#cache.holds(index)) s.local++;
        else {
          await this.#yieldToForeground(signal);
          this.#fetching++;
          try {
            await this.#cache.hydrate(index, { priority: 'background', signal });
          } finally {
            this.#fetching--;
          }
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
      { concurrency: HYDRATE_CONCURRENCY, signal },
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

  /** The stored blocks, once the zero map has them all (a mount lists the volume in the background). */
  async *#storedOnceListed(signal: AbortSignal): AsyncGenerator<number> {
    await this.#zeroMap.listed;
    signal.throwIfAborted();
    const s = this.#stats;
    s.total = Math.max(s.total, this.#zeroMap.stats.stored);
    s.bytesTotal = s.total * this.#cache.blockSize;
    yield* this.#zeroMap.storedIndices();
  }

  /** Returns when a fetch may start: at once, unless a reader is busy on S3 and HYDRATE_YIELD are in flight. */
  async #yieldToForeground(signal: AbortSignal): Promise<void> {
    // No await between the last check and the caller's increment: the bound holds.
    while (this.#fetching >= HYDRATE_YIELD && this.#foregroundIdleMs() < HYDRATE_QUIET_MS) await sleep(YIELD_POLL_MS, undefined, { signal });
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
