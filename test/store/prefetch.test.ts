// The prefetch layer (src/store/prefetch.ts) over an instrumented memory store
// that answers after a delay, counts requests by priority and can fail on demand.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockStore, ReadOptions } from '../../dist/store/types.js';
import { BlockBuffers } from '../../dist/store/block-buffers.js';
import { MemoryBlockStore } from '../../dist/store/memory-store.js';
import { PrefetchStore, DEFAULT_PREFETCH_CONFIG, type PrefetchConfig } from '../../dist/store/prefetch.js';
import { silentLogger } from '../../dist/log.js';
import { until } from '../helpers/until.js';

const BS = 4096;

interface Request {
  readonly index: number;
  readonly priority: 'foreground' | 'background';
  /** The highest index the test had read (foreground) when the request was sent. */
  readonly readerAt: number;
}

/** A memory store whose reads take `delay` ms and return what the block held when the request was sent. */
class SlowStore implements BlockStore {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly mem: MemoryBlockStore;
  readonly requests: Request[] = [];
  readonly active = { foreground: 0, background: 0 };
  readonly maxActive = { foreground: 0, background: 0 };
  /** Background reads of these blocks fail. */
  readonly failBackground = new Set<number>();
  readerAt = -1;
  /** The distinct memory read-ahead and readers gave to read into. */
  readonly intoMemory = new Set<ArrayBufferLike>();
  closed = false;
  activeAtClose = -1;
  constructor(
    blockCount: number,
    public delay: number,
  ) {
    this.blockSize = BS;
    this.blockCount = blockCount;
    this.mem = new MemoryBlockStore(BS, blockCount);
  }
  async read(index: number, opts?: ReadOptions): Promise<Buffer | null> {
    const priority = opts?.priority ?? 'foreground';
    this.requests.push({ index, priority, readerAt: this.readerAt });
    this.active[priority]++;
    this.maxActive[priority] = Math.max(this.maxActive[priority], this.active[priority]);
    try {
      // Snapshot first, like a GET whose bytes are already on the wire.
      const data = await this.mem.read(index);
      await sleep(this.delay);
      if (priority === 'background' && this.failBackground.has(index)) throw new Error(`injected failure of ${index}`);
      // Into the caller's buffer when it gives one, a new object each time, as the S3 store does.
      const into = opts?.into;
      if (data === null || into === undefined) return data;
      this.intoMemory.add(into.buffer);
      data.copy(into);
      return Buffer.from(into.buffer, into.byteOffset, into.length);
    } finally {
      this.active[priority]--;
    }
  }
  write(index: number, data: Buffer | null): Promise<void> {
    return this.mem.write(index, data);
  }
  flush(): Promise<void> {
    return this.mem.flush();
  }
  async close(): Promise<void> {
    this.activeAtClose = this.active.foreground + this.active.background;
    this.closed = true;
    await this.mem.close();
  }
  count(priority: 'foreground' | 'background'): number {
    return this.requests.filter((r) => r.priority === priority).length;
  }
}

/** Distinct, recognisable content per block (first 4 bytes = index). */
function block(i: number, version = 0): Buffer {
  const b = Buffer.alloc(BS, (i + version * 7) % 251 + 1);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(version, 4);
  return b;
}

async function filled(count: number, delay: number): Promise<SlowStore> {
  const inner = new SlowStore(count, delay);
  for (let i = 0; i < count; i++) await inner.mem.write(i, block(i));
  return inner;
}

/** The mechanics below are written for streams that start on their third read; the default (2) has tests of its own. */
function prefetch(inner: BlockStore, config: Partial<PrefetchConfig> = {}): PrefetchStore {
  return new PrefetchStore({ triggerReads: 3, ...config }, inner, { log: silentLogger });
}

/** Reads `from..to` in order, one at a time, checking every block. */
async function scan(store: PrefetchStore, inner: SlowStore, from: number, to: number, pause = 0): Promise<void> {
  for (let i = from; i <= to; i++) {
    inner.readerAt = i;
    assert.deepEqual(await store.read(i), block(i), `block ${i}`);
    if (pause > 0) await sleep(pause);
  }
}

describe('prefetch: reused read-ahead buffers', () => {
  test('a reader lending its buffer from the read-ahead pool is handed results without a copy; a reader with a buffer of another pool gets a copy', async () => {
    const inner = await filled(128, 1);
    const store = prefetch(inner, { initialWindow: 4, maxWindowBytes: 8 * BS, maxHeldBytes: 16 * BS, concurrency: 4 });
    const pool = store.buffers;
    let handed = 0;
    for (let i = 0; i < 128; i++) {
      inner.readerAt = i;
      const mine = pool.acquire();
      const got = await store.read(i, { into: mine, pool });
      assert.ok(got !== null, `block ${i}`);
      assert.deepEqual(got, block(i), `block ${i}`);
      if (got.buffer !== mine.buffer) {
        // A read-ahead's own buffer: now the reader's, lent by the same pool.
        assert.ok(pool.owns(got), `block ${i}: the handed buffer is lent by the pool`);
        handed++;
        pool.release(got);
      }
      pool.release(mine);
    }
    assert.ok(handed > 100, `read-ahead results handed over as they are (${handed} of 128)`);
    // A reader whose buffer is not of that pool still gets its bytes copied into it.
    const other = Buffer.alloc(BS);
    for (let i = 0; i < 16; i++) {
      const got = await store.read(i, { into: other, pool: new BlockBuffers(BS, 1) });
      assert.ok(got !== null && got.buffer === other.buffer, `block ${i} in the reader's buffer`);
    }
    await store.close();
  });

  test('read-ahead lands in buffers used again; readers with a buffer of their own get a copy, right through rewrites', async () => {
    const inner = await filled(256, 1);
    const store = prefetch(inner, { initialWindow: 4, maxWindowBytes: 8 * BS, maxHeldBytes: 16 * BS, concurrency: 4 });
    const mine = Buffer.alloc(BS);
    const versions = new Map<number, number>();
    for (let i = 0; i < 256; i++) {
      inner.readerAt = i;
      // Rewrite blocks just ahead of the reader now and then: held or in-flight copies of them are dropped.
      if (i % 17 === 0 && i + 2 < 256) {
        const v = (versions.get(i + 2) ?? 0) + 1;
        versions.set(i + 2, v);
        await store.write(i + 2, block(i + 2, v));
      }
      const got = await store.read(i, { into: mine });
      assert.ok(got !== null && got.buffer === mine.buffer, `block ${i} comes in the reader's buffer`);
      assert.deepEqual(got, block(i, versions.get(i) ?? 0), `block ${i}`);
    }
    assert.ok(store.stats.used > 200, `read-ahead served the stream (${store.stats.used})`);
    // 256 read-aheads through at most ~16 buffers in use at once (plus the reader's).
    assert.ok(inner.intoMemory.size <= 17, `buffers used again (${inner.intoMemory.size} distinct)`);
    // A reader without a buffer of its own gets the result as it is, and it stays right.
    const kept: Buffer[] = [];
    for (let i = 0; i < 64; i++) kept.push((await store.read(i))!);
    for (let i = 0; i < 64; i++) assert.deepEqual(kept[i], block(i, versions.get(i) ?? 0), `kept block ${i}`);
    await store.close();
  });
});

describe('prefetch: BlockStore basics', () => {
  test('reads back, zero writes, rewrites', async () => {
    const store = prefetch(new MemoryBlockStore(BS, 16));
    assert.equal(store.blockSize, BS);
    assert.equal(store.blockCount, 16);
    assert.equal(await store.read(0), null);
    const a = randomBytes(BS);
    await store.write(3, Buffer.from(a));
    assert.deepEqual(await store.read(3), a);
    const b = randomBytes(BS);
    await store.write(3, Buffer.from(b));
    assert.deepEqual(await store.read(3), b);
    await store.write(3, Buffer.alloc(BS));
    assert.equal(await store.read(3), null);
    await store.write(4, Buffer.from(a));
    await store.write(4, null);
    assert.equal(await store.read(4), null);
  });

  test('out of range indices and wrong sizes are refused', async () => {
    const store = prefetch(new MemoryBlockStore(BS, 16));
    await assert.rejects(store.read(16), { code: 'ERANGE' });
    await assert.rejects(store.read(-1), { code: 'ERANGE' });
    await assert.rejects(store.read(0.5), { code: 'ERANGE' });
    await assert.rejects(store.write(16, null), { code: 'ERANGE' });
    await assert.rejects(store.write(0, Buffer.alloc(BS + 1)), { code: 'ERANGE' });
  });

  test('flush reaches the store below; after close every call is refused and the store below is closed', async () => {
    const inner = new MemoryBlockStore(BS, 16);
    const store = prefetch(inner);
    await store.write(1, randomBytes(BS));
    await store.flush();
    assert.equal(inner.stats.flush, 1);
    await store.close();
    await assert.rejects(store.read(1), { code: 'ECLOSED' });
    await assert.rejects(store.write(1, null), { code: 'ECLOSED' });
    await assert.rejects(store.flush(), { code: 'ECLOSED' });
    await assert.rejects(inner.read(1), { code: 'ECLOSED' });
  });

  test('a bad configuration is refused', () => {
    const inner = new MemoryBlockStore(BS, 16);
    assert.throws(() => prefetch(inner, { concurrency: 0 }), { code: 'EUSAGE' });
    assert.throws(() => prefetch(inner, { streams: 1.5 }), { code: 'EUSAGE' });
  });
});

describe('prefetch: read-ahead', () => {
  /** Scans 0..299 with `readerDelay` ms per read over a store answering in `storeDelay` ms; checks what every scan must give. */
  async function sequential(storeDelay: number, readerDelay: number): Promise<{ ahead: number; lead: number }> {
    const inner = await filled(512, storeDelay);
    const store = prefetch(inner, { concurrency: 8, maxWindowBytes: 32 * BS, maxHeldBytes: 64 * BS });
    let ahead = 0;
    const timer = setInterval(() => {
      ahead = Math.max(ahead, store.stats.held + store.stats.inflight + store.stats.queued);
    }, 1);
    await scan(store, inner, 0, 299, readerDelay);
    clearInterval(timer);
    const bg = inner.requests.filter((r) => r.priority === 'background');
    assert.ok(bg.length >= 290, `background reads: ${bg.length}`);
    assert.ok(inner.count('foreground') <= 4, `foreground reads reaching the store: ${inner.count('foreground')}`);
    assert.ok(store.stats.used >= 295, `used ${store.stats.used}`);
    for (const r of bg) assert.ok(r.index > r.readerAt, `read-ahead of ${r.index} while the reader was at ${r.readerAt}`);
    const perBlock = new Map<number, number>();
    for (const r of inner.requests) perBlock.set(r.index, (perBlock.get(r.index) ?? 0) + 1);
    assert.deepEqual([...perBlock.values()].filter((n) => n > 1), [], 'no block requested twice');
    // Accounting: every fetched block was used, dropped, or is still held.
    const s = store.stats;
    assert.equal(s.prefetched, s.used + s.wasted + s.held);
    await store.close();
    return { ahead, lead: Math.max(...bg.map((r) => r.index - r.readerAt)) };
  }

  test('a reader faster than the store: served from read-ahead, each block once, the window grows to its maximum', async () => {
    const { ahead, lead } = await sequential(3, 0);
    assert.ok(ahead >= 16 && ahead <= 33, `blocks held, in flight and queued: up to ${ahead} (window max 32, plus the block being read)`);
    assert.ok(lead >= 8, `read-ahead ran ${lead} blocks ahead (all 8 request slots busy)`);
  });

  test('a reader slower than the store: read-ahead stays as shallow as hides the latency (little to waste at the end of a file)', async () => {
    const { ahead, lead } = await sequential(3, 4);
    assert.ok(ahead <= 8, `blocks held, in flight and queued: up to ${ahead}`);
    assert.ok(lead <= 8, `the window stayed at ${lead} blocks`);
  });

  /** Two reads at a time, in order (0,1 then 2,3 ...), like ZFS reading a file with its own read-ahead. */
  async function pairs(store: PrefetchStore, inner: SlowStore, blocks: number): Promise<void> {
    for (let i = 0; i < blocks; i += 2) {
      inner.readerAt = i + 1;
      const [a, b] = await Promise.all([store.read(i), store.read(i + 1)]);
      assert.deepEqual(a, block(i));
      assert.deepEqual(b, block(i + 1));
    }
  }

  test('a reader that keeps several reads in flight (ZFS prefetching a file) gets only a shallow read-ahead on top', async () => {
    const inner = await filled(512, 3);
    const store = prefetch(inner, { concurrency: 8, maxWindowBytes: 32 * BS, maxHeldBytes: 64 * BS, parallelWindow: 3 });
    await pairs(store, inner, 200);
    const background = inner.requests.filter((r) => r.priority === 'background');
    assert.ok(background.length >= 150, `read-ahead served most blocks: ${background.length} requests`);
    const lead = Math.max(...background.map((r) => r.index - r.readerAt));
    assert.ok(lead <= 3, `never more than 3 blocks ahead of the newest read: ${lead}`);
    const beyond = inner.requests.filter((r) => r.index >= 200).length;
    assert.ok(beyond <= 3, `at most 3 blocks fetched past the end of what was read: ${beyond}`);
    assert.equal(new Set(inner.requests.map((r) => r.index)).size, inner.requests.length, 'no block fetched twice');
    await store.close();
  });

  test('with parallelWindow 0, such a reader gets no read-ahead at all', async () => {
    const inner = await filled(512, 3);
    const store = prefetch(inner, { concurrency: 8, maxWindowBytes: 32 * BS, maxHeldBytes: 64 * BS, parallelWindow: 0 });
    await pairs(store, inner, 200);
    assert.equal(inner.count('background'), 0, 'no read-ahead was sent');
    assert.equal(inner.count('foreground'), 200, 'each block fetched once, by its reader');
    await store.close();
  });

  test('a read of a block whose read-ahead is in flight waits for it instead of asking again', async () => {
    const inner = await filled(256, 40);
    const store = prefetch(inner);
    await scan(store, inner, 0, 1);
    const two = store.read(2); // starts read-ahead of 3..6
    const started = performance.now();
    const three = store.read(3);
    assert.deepEqual(await three, block(3));
    assert.ok(performance.now() - started < 80, 'served by the request already in flight');
    assert.deepEqual(await two, block(2));
    assert.deepEqual(
      inner.requests.filter((r) => r.index === 3).map((r) => r.priority),
      ['background'],
      'one request for block 3',
    );
    assert.equal(store.stats.used, 1);
    await store.close();
  });

  test('a scan that starts in the middle of the device, and several interleaved scans, are detected', async () => {
    const inner = await filled(1024, 2);
    const store = prefetch(inner, { concurrency: 8, maxWindowBytes: 16 * BS, maxHeldBytes: 128 * BS });
    for (let k = 0; k < 60; k++) {
      for (const base of [100, 400, 700]) {
        inner.readerAt = base + k;
        assert.deepEqual(await store.read(base + k), block(base + k));
      }
    }
    assert.ok(store.stats.used >= 160, `used ${store.stats.used} of 180 reads`);
    await store.close();
  });

  test('read-ahead skips blocks the layer above already holds', async () => {
    const inner = await filled(200, 2);
    const held = (i: number) => i % 2 === 0; // the cache above holds every even block
    const store = new PrefetchStore({ initialWindow: 8 }, inner, { log: silentLogger, skip: held });
    for (let i = 0; i < 100; i += 1) {
      inner.readerAt = i;
      if (!held(i)) assert.deepEqual(await store.read(i), block(i));
      else await store.read(i); // a reader may still ask; only read-ahead must skip
    }
    const background = inner.requests.filter((r) => r.priority === 'background');
    assert.ok(background.length > 10, `read-ahead ran (${background.length})`);
    assert.deepEqual(background.filter((r) => held(r.index)), [], 'no read-ahead of held blocks');
    await store.close();
  });

  test('random reads trigger no read-ahead', async () => {
    const inner = await filled(4096, 0);
    const store = prefetch(inner);
    let x = 12345;
    for (let n = 0; n < 500; n++) {
      x = (x * 48271) % 2147483647; // a fixed sequence (MINSTD), so no flaky near-misses
      const i = x % 4096;
      assert.deepEqual(await store.read(i), block(i));
    }
    // Pairs of neighbours and a stride are not streams either.
    for (const i of [10, 11, 50, 51, 90, 91, 2000, 2002, 2004, 2006, 2008]) await store.read(i);
    await sleep(10);
    assert.equal(inner.count('background'), 0);
    assert.equal(store.stats.prefetched, 0);
    await store.close();
  });

  test('by default two reads in a row start a stream: 4 blocks ahead, as s3backer (ZFS import: the labels, then the next blocks)', async () => {
    const inner = await filled(256, 5);
    const store = new PrefetchStore({}, inner, { log: silentLogger });
    assert.deepEqual(await store.read(4), block(4));
    await sleep(20);
    assert.equal(inner.count('background'), 0, 'one read is not a stream');
    assert.deepEqual(await store.read(5), block(5));
    await until('read-ahead of 6..9', () => inner.count('background') === 4);
    assert.deepEqual(inner.requests.filter((r) => r.priority === 'background').map((r) => r.index).sort((a, b) => a - b), [6, 7, 8, 9]);
    await sleep(20);
    assert.equal(inner.count('background'), 4, 'no more than the first window');
    await store.close();
  });

  test('by default random reads (no neighbours) and strides trigger no read-ahead', async () => {
    const inner = await filled(4096, 0);
    const store = new PrefetchStore({}, inner, { log: silentLogger });
    let x = 12345;
    for (let n = 0; n < 500; n++) {
      x = (x * 48271) % 2147483647;
      await store.read(x % 4096);
    }
    for (const i of [2000, 2002, 2004, 2006, 2008]) await store.read(i);
    await sleep(10);
    assert.equal(inner.count('background'), 0);
    await store.close();
  });

  test('foregroundIdleMs: 0 while a foreground read waits below, then the time since; background reads do not count', async () => {
    const inner = await filled(64, 40);
    const store = prefetch(inner);
    assert.equal(store.foregroundIdleMs, Infinity, 'no reader yet');
    await store.read(10, { priority: 'background' });
    assert.equal(store.foregroundIdleMs, Infinity, 'hydration is not a reader');
    const reading = store.read(20);
    assert.equal(store.foregroundIdleMs, 0);
    await reading;
    await sleep(30);
    const idle = store.foregroundIdleMs;
    assert.ok(idle >= 25 && idle < 1000, `idle ${idle} ms`);
    await store.close();
  });

  test('background reads from above (hydration) do not steer read-ahead', async () => {
    const inner = await filled(256, 0);
    const store = prefetch(inner);
    for (let i = 0; i < 40; i++) assert.deepEqual(await store.read(i, { priority: 'background' }), block(i));
    await sleep(10);
    assert.equal(inner.requests.length, 40);
    assert.equal(store.stats.prefetched, 0);
    await store.close();
  });

  test('read-ahead concurrency never exceeds its bound', async () => {
    const inner = await filled(512, 15);
    const store = prefetch(inner, { concurrency: 3, maxWindowBytes: 64 * BS, maxHeldBytes: 128 * BS });
    await scan(store, inner, 0, 120);
    assert.equal(inner.maxActive.background, 3, `at most 3 in flight, and the bound was reached`);
    await store.close();
  });

  test('held read-ahead never exceeds maxHeldBytes, also when readers stop consuming', async () => {
    const inner = await filled(1024, 2);
    const maxHeldBytes = 8 * BS;
    const store = prefetch(inner, { concurrency: 4, initialWindow: 8, maxWindowBytes: 64 * BS, maxHeldBytes });
    let maxHeld = 0;
    let maxInMemory = 0;
    const sample = () => {
      maxHeld = Math.max(maxHeld, store.stats.heldBytes);
      assert.ok(store.stats.held * BS >= store.stats.heldBytes);
      maxInMemory = Math.max(maxInMemory, (store.stats.held + store.stats.inflight) * BS);
    };
    const timer = setInterval(sample, 1);
    try {
      // Three readers that each read a stretch and then stop, leaving read-ahead behind.
      for (const base of [0, 300, 600]) {
        for (let i = base; i < base + 20; i++) {
          inner.readerAt = i;
          await store.read(i);
          sample();
        }
        await sleep(30);
        sample();
      }
    } finally {
      clearInterval(timer);
    }
    assert.ok(maxHeld > 0, 'read-ahead was held');
    assert.ok(maxHeld <= maxHeldBytes, `held ${maxHeld} bytes`);
    assert.ok(maxInMemory <= maxHeldBytes, `held + in flight ${maxInMemory} bytes`);
    assert.ok(store.stats.wasted > 0, 'the oldest unread blocks were dropped for newer ones');
    // Accounting: every fetched block was used, dropped, or is still held.
    const s = store.stats;
    assert.equal(s.prefetched, s.used + s.wasted + s.held);
    await store.close();
  });
});

describe('prefetch: writes, priority, failures, close', () => {
  test('a write during an in-flight read-ahead of that block: later reads see the new data', async () => {
    const inner = await filled(256, 50);
    const store = prefetch(inner, { concurrency: 16 });
    await scan(store, inner, 0, 1);
    const two = store.read(2); // starts read-ahead of 3..6 before its own request returns
    await until('read-ahead of 3..6', () => inner.requests.some((r) => r.index === 6 && r.priority === 'background'));
    assert.equal(store.stats.inflight, 4);
    // 5: read once its stale read-ahead has landed; 6: read while that is still in flight.
    await store.write(5, block(5, 1));
    await store.write(6, block(6, 1));
    assert.deepEqual(await store.read(6), block(6, 1), 'no stale in-flight copy handed out');
    assert.deepEqual(await two, block(2));
    await sleep(60); // the stale read-ahead of 5 (50 ms) has landed
    assert.deepEqual(await store.read(5), block(5, 1), 'no stale copy of an in-flight read-ahead kept');
    // 4: its read-ahead is held; a write (even a zero write) drops it.
    const wasted = store.stats.wasted;
    await store.write(4, null);
    assert.equal(store.stats.wasted, wasted + 1, 'the held copy of 4 was dropped');
    assert.equal(await store.read(4), null, 'no stale held copy handed out');
    assert.deepEqual(await store.read(3), block(3));
    await store.close();
  });

  test('a foreground read never waits behind queued read-ahead', async () => {
    const delay = 50;
    const inner = await filled(4096, delay);
    const store = prefetch(inner, { concurrency: 4, initialWindow: 64, maxWindowBytes: 64 * BS, maxHeldBytes: 128 * BS });
    await scan(store, inner, 0, 2);
    assert.ok(store.stats.queued >= 50, `read-ahead queued: ${store.stats.queued}`);
    assert.equal(store.stats.inflight, 4);
    const started = performance.now();
    assert.deepEqual(await store.read(3000), block(3000));
    const took = performance.now() - started;
    // Behind the queue it would take ~16 delays (64 blocks / 4 at a time).
    assert.ok(took < 3 * delay, `foreground read took ${took.toFixed(0)} ms`);
    assert.ok(store.stats.queued > 0, 'the read-ahead queue was still there');
    await store.close();
  });

  test('read-ahead failures never fail a read', async () => {
    const inner = await filled(256, 3);
    for (let i = 5; i <= 12; i++) inner.failBackground.add(i);
    const store = prefetch(inner, { concurrency: 4 });
    await scan(store, inner, 0, 40);
    assert.ok(store.stats.failed >= 4, `failed ${store.stats.failed}`);
    const fgIndices = inner.requests.filter((r) => r.priority === 'foreground').map((r) => r.index);
    assert.ok(fgIndices.some((i) => i >= 5 && i <= 12), 'the reader fetched failed blocks itself');
    assert.ok(store.stats.used >= 25, `used ${store.stats.used}`);
    await store.close();
  });

  test('close stops read-ahead: no request reaches the store below afterwards', async () => {
    const inner = await filled(1024, 30);
    const store = prefetch(inner, { concurrency: 2, initialWindow: 32, maxWindowBytes: 32 * BS });
    await scan(store, inner, 0, 2);
    assert.ok(store.stats.queued > 10, `queued ${store.stats.queued}`);
    assert.equal(store.stats.inflight, 2);
    await store.close();
    assert.ok(inner.closed);
    assert.equal(inner.activeAtClose, 0, 'the store below was closed only after its last read-ahead settled');
    const sent = inner.requests.length;
    await sleep(120);
    assert.equal(inner.requests.length, sent);
    await assert.rejects(store.read(3), { code: 'ECLOSED' });
    assert.equal(store.stats.held, 0);
  });

  test('defaults: 32 requests, 32 MiB window, 64 MiB held, the trigger and first window of s3backer', () => {
    assert.equal(DEFAULT_PREFETCH_CONFIG.concurrency, 32);
    assert.equal(DEFAULT_PREFETCH_CONFIG.triggerReads, 2);
    assert.equal(DEFAULT_PREFETCH_CONFIG.initialWindow, 4);
    assert.equal(DEFAULT_PREFETCH_CONFIG.maxWindowBytes, 32 * 1024 ** 2);
    assert.equal(DEFAULT_PREFETCH_CONFIG.maxHeldBytes, 64 * 1024 ** 2);
  });
});
