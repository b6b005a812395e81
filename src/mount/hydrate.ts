// Hydration: pulls every stored block of the volume into the local cache in the
// background, at low priority, so that a restored volume stops depending on S3.
// States: idle -> running -> done | stopped. Reads go through the cache (which
// keeps them) with priority 'background'; blocks already cached cost nothing.
import pMap from 'p-map';
import type { Logger } from '../log.js';
import type { CacheStore } from '../store/cache.js';
import type { ZeroMapStore } from '../store/zero-map.js';

export class Hydrator {
  readonly stats = { done: 0, total: 0 };
  #cache: CacheStore;
  #zeroMap: ZeroMapStore;
  #log: Logger;
  #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(cache: CacheStore, zeroMap: ZeroMapStore, log: Logger) {
    this.#cache = cache;
    this.#zeroMap = zeroMap;
    this.#log = log.child({ layer: 'hydrate' });
  }

  start(concurrency = 4): void {
    if (this.#running) return;
    this.stats.total = this.#zeroMap.stats.stored;
    const signal = this.#stop.signal;
    this.#running = pMap(
      this.#zeroMap.storedIndices(),
      async (index) => {
        await this.#cache.hydrate(index, { priority: 'background', signal });
        this.stats.done++;
      },
      { concurrency, signal },
    ).then(
      () => this.#log.info(this.stats, 'hydration done'),
      (err: unknown) => {
        if (!signal.aborted) this.#log.error({ err: (err as Error).message }, 'hydration stopped by an error');
      },
    );
  }

  stop(): void {
    this.#stop.abort();
  }
}
