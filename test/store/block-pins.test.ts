// The cache's pins: a drop asked for while a block is read waits for its last reader,
// happens once, and not at all once the block is written again; close() waits for slices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockPins } from '../../dist/store/block-pins.js';

test('a drop of a block being read waits for its last reader, once', () => {
  const pins = new BlockPins();
  assert.equal(pins.deferDrop(1), false, 'no reader: drop now');
  pins.pin(1);
  pins.pin(1);
  assert.equal(pins.deferDrop(1), true, 'two readers: the drop waits');
  assert.equal(pins.unpin(1), false, 'one reader left');
  assert.equal(pins.unpin(1), true, 'the last reader drops it');
  pins.pin(1);
  assert.equal(pins.unpin(1), false, 'reported once');
  assert.equal(pins.deferDrop(1), false, 'and the block is unpinned');
});

test('a write cancels a deferred drop; other blocks are not affected', () => {
  const pins = new BlockPins();
  pins.pin(1);
  pins.pin(2);
  assert.equal(pins.deferDrop(1), true);
  assert.equal(pins.deferDrop(2), true);
  pins.cancelDrop(1);
  assert.equal(pins.unpin(1), false, 'written again: kept');
  assert.equal(pins.unpin(2), true);
});

test('slicesBack() resolves once every slice handed out came back', async () => {
  const pins = new BlockPins();
  await pins.slicesBack(); // none out
  pins.sliceOut();
  pins.sliceOut();
  let back = false;
  const waiting = pins.slicesBack().then(() => (back = true));
  pins.sliceBack();
  await new Promise((r) => setImmediate(r));
  assert.equal(back, false, 'one still out');
  pins.sliceBack();
  await waiting;
  assert.equal(back, true);
});
