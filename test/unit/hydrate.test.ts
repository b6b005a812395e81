// The hydration sweep's pacing (src/mount/hydrate.ts), against a target whose fetches
// the test settles by hand: how many run at once, that blocks already local cost
// nothing, and that fetches hold back while a foreground read waits on S3.
// End to end (CLI, FUSE mount, S3 behind a fault proxy): test/device/hydrate.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hydrator, HYDRATE_CONCURRENCY, HYDRATE_QUIET_MS, HYDRATE_YIELD, type HydrationTarget, type StoredBlocks } from '../../dist/mount/hydrate.js';
import { silentLogger } from '../../dist/log.js';
import { until } from '../helpers/until.js';

/** A cache whose fetches stay pending until settle(). */
class ManualTarget implements HydrationTarget {
  readonly blockSize = 4096;
  readonly held = new Set<number>();
  readonly pending = new Map<number, () => void>();
  mostAtOnce = 0;

  holds(index: number): boolean {
    return this.held.has(index);
  }

  hydrate(index: number): Promise<void> {
    return new Promise((resolve) => {
      this.pending.set(index, () => {
        this.pending.delete(index);
        this.held.add(index);
        resolve();
      });
      this.mostAtOnce = Math.max(this.mostAtOnce, this.pending.size);
    });
  }

  /** Lands the `n` oldest fetches in flight. */
  settle(n = Infinity): void {
    for (const land of [...this.pending.values()].slice(0, n)) land();
  }
}

function storedBlocks(count: number, listed: Promise<void> = Promise.resolve()): StoredBlocks & { stats: { stored: number } } {
  const stats = { stored: count };
  return {
    stats,
    listed,
    async *storedIndices() {
      for (let i = 0; i < stats.stored; i++) yield i;
    },
  };
}

/** Lands every fetch until the run ends. */
async function drain(h: Hydrator, target: ManualTarget): Promise<void> {
  await until('the run to end', () => {
    target.settle();
    return h.stats.state !== 'running';
  });
}

describe('hydration pacing', () => {
  test(`with no foreground read waiting, ${HYDRATE_CONCURRENCY} fetches run at once; local blocks cost none`, async () => {
    const target = new ManualTarget();
    for (const i of [0, 7, 30]) target.held.add(i);
    const h = new Hydrator(target, storedBlocks(40), { log: silentLogger, foregroundIdleMs: () => Infinity });
    h.start();
    await until(`${HYDRATE_CONCURRENCY} fetches in flight`, () => target.pending.size === HYDRATE_CONCURRENCY);
    await sleep(20);
    assert.equal(target.pending.size, HYDRATE_CONCURRENCY, 'no more than the bound');
    await drain(h, target);
    const s = h.stats;
    assert.equal(s.state, 'done');
    assert.deepEqual([s.done, s.total, s.local, s.fetched], [40, 40, 3, 37]);
    assert.equal(target.mostAtOnce, HYDRATE_CONCURRENCY);
    assert.equal(target.held.size, 40);
  });

  test('a run waits for the zero map to finish listing, then counts every stored block', async () => {
    const target = new ManualTarget();
    let finishListing = (): void => {};
    const blocks = storedBlocks(3, new Promise<void>((resolve) => (finishListing = resolve)));
    const h = new Hydrator(target, blocks, { log: silentLogger, foregroundIdleMs: () => Infinity });
    h.start();
    await sleep(30);
    assert.equal(target.pending.size, 0, 'no fetch before the listing is done');
    assert.equal(h.stats.state, 'running');
    blocks.stats.stored = 25; // the rest of the LIST came in
    finishListing();
    await until('fetches in flight', () => target.pending.size > 0);
    await drain(h, target);
    assert.deepEqual([h.stats.state, h.stats.done, h.stats.total, h.stats.fetched], ['done', 25, 25, 25]);
  });

  test(`while a reader waits on S3, and for ${HYDRATE_QUIET_MS} ms after, no fetch starts unless fewer than ${HYDRATE_YIELD} are in flight`, async () => {
    const target = new ManualTarget();
    let idleMs = Infinity;
    const h = new Hydrator(target, storedBlocks(64), { log: silentLogger, foregroundIdleMs: () => idleMs });
    h.start();
    await until('a full set in flight', () => target.pending.size === HYDRATE_CONCURRENCY);

    idleMs = 0; // a reader waits now
    target.settle(HYDRATE_CONCURRENCY - 5);
    await sleep(60);
    assert.equal(target.pending.size, 5, 'none started while the reader waits');
    target.settle(4);
    await until(`${HYDRATE_YIELD} in flight`, () => target.pending.size === HYDRATE_YIELD);
    await sleep(60);
    assert.equal(target.pending.size, HYDRATE_YIELD, 'held at the yield bound');
    idleMs = HYDRATE_QUIET_MS - 1; // it stopped waiting a moment ago: it is still reading
    target.settle(1);
    await until(`${HYDRATE_YIELD} in flight again`, () => target.pending.size === HYDRATE_YIELD);
    await sleep(60);
    assert.equal(target.pending.size, HYDRATE_YIELD, 'still held between the reader\'s reads');

    idleMs = HYDRATE_QUIET_MS; // quiet long enough
    await until('full speed again', () => target.pending.size === HYDRATE_CONCURRENCY);
    await drain(h, target);
    assert.equal(h.stats.state, 'done');
    assert.equal(h.stats.fetched, 64);
  });

  test('stop() while fetches are held back ends the run as failed: the mount is stopping', async () => {
    const target = new ManualTarget();
    const h = new Hydrator(target, storedBlocks(64), { log: silentLogger, foregroundIdleMs: () => 0 });
    h.start();
    await until('the yield bound in flight', () => target.pending.size === HYDRATE_YIELD);
    h.stop();
    await until('the run to end', () => h.stats.state !== 'running');
    assert.equal(h.stats.state, 'failed');
    assert.equal(h.stats.error, 'the mount is stopping');
    assert.equal(h.stats.errorCode, 'EMOUNT');
    target.settle();
  });
});
