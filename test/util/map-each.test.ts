// mapEach: p-map over an async source that does not lose the source's error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapEach } from '../../dist/util/map-each.js';

/** Yields 0..n-1, then waits `lateMs` and throws. */
async function* failingAfter(n: number, lateMs: number): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) yield i;
  await sleep(lateMs);
  throw new Error('the source failed');
}

for (const concurrency of [1, 2, 4]) {
  test(`a source that fails late, with other pulls pending, rejects (concurrency ${concurrency})`, async () => {
    const mapped: number[] = [];
    await assert.rejects(
      mapEach(failingAfter(4, 50), async (i) => {
        await sleep(5);
        mapped.push(i);
      }, { concurrency }),
      /the source failed/,
    );
    assert.deepEqual(mapped.sort(), [0, 1, 2, 3], 'every item taken before the failure was mapped');
  });
}

test('a mapper error rejects, and the source is closed', async () => {
  let closed = false;
  async function* endless(): AsyncGenerator<number> {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      closed = true;
    }
  }
  await assert.rejects(mapEach(endless(), async (i) => {
    if (i === 3) throw new Error('mapper failed');
  }, { concurrency: 2 }), /mapper failed/);
  assert.ok(closed);
});

test('every item is mapped once, at most `concurrency` at a time', async () => {
  let running = 0;
  let peak = 0;
  const seen: number[] = [];
  async function* items(): AsyncGenerator<number> {
    for (let i = 0; i < 20; i++) yield i;
  }
  await mapEach(items(), async (i) => {
    running++;
    peak = Math.max(peak, running);
    await sleep(2);
    seen.push(i);
    running--;
  }, { concurrency: 3 });
  assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  assert.equal(peak, 3);
});
