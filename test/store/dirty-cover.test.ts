// The count of a dirty block's written segments: a block is complete once every 64 KiB
// segment was written in whole since it went up, in any order; partial segments do not
// count, and a block that went up starts over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirtyCover } from '../../dist/store/dirty-cover.js';

const MiB = 1024 * 1024;
const K128 = 128 * 1024;

test('a whole-block write is complete at once and leaves nothing behind', () => {
  const cover = new DirtyCover(MiB);
  assert.equal(cover.written(3, 0, MiB), true);
  assert.equal(cover.size, 0);
});

test('eight 128 KiB pieces in any order complete a 1 MiB block at the last one', () => {
  const cover = new DirtyCover(MiB);
  const order = [5, 0, 7, 2, 1, 6, 3, 4];
  order.forEach((piece, n) => {
    const done = cover.written(9, piece * K128, K128);
    assert.equal(done, n === order.length - 1, `piece ${piece} (write ${n + 1} of 8)`);
  });
  assert.equal(cover.size, 0, 'the mask is dropped once complete');
});

test('a piece that covers a segment only in part does not count it', () => {
  const cover = new DirtyCover(MiB);
  // Everything but the first 4 KiB segment, then that segment from its start but short.
  assert.equal(cover.written(1, 4096, MiB - 4096), false);
  assert.equal(cover.written(1, 0, 3584), false);
  assert.equal(cover.written(1, 0, 4096), true);
});

test('blocks are counted apart, and forget() starts a block over', () => {
  const cover = new DirtyCover(MiB);
  assert.equal(cover.written(1, 0, MiB / 2), false);
  assert.equal(cover.written(2, MiB / 2, MiB / 2), false);
  assert.equal(cover.size, 2);
  cover.forget(1);
  assert.equal(cover.written(1, MiB / 2, MiB / 2), false, 'the first half was forgotten');
  assert.equal(cover.written(2, 0, MiB / 2), true);
  assert.equal(cover.size, 1);
});

test('a block smaller than a segment is one segment', () => {
  const cover = new DirtyCover(16 * 1024);
  assert.equal(cover.written(0, 0, 8192), false);
  assert.equal(cover.written(0, 0, 16 * 1024), true);
});
