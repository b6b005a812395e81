// The prefetch layer's read streams (src/store/read-streams.ts) alone: which reads start
// a stream, which blocks each read answers to read ahead, and how the window grows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadStreams, type ReadStreamsConfig } from '../../dist/store/read-streams.js';

function streams(config: Partial<ReadStreamsConfig> = {}): ReadStreams {
  return new ReadStreams({
    blockCount: 1000,
    initialWindow: 2,
    maxWindow: 8,
    streams: 8,
    triggerReads: 2,
    parallelWindow: 3,
    ...config,
  });
}

test('no read-ahead before triggerReads reads in a row; then initialWindow blocks past the read', () => {
  const rs = streams({ triggerReads: 3, initialWindow: 4 });
  assert.equal(rs.observe(10, true, true), undefined);
  assert.equal(rs.observe(11, true, true), undefined, 'two in a row: not yet');
  assert.deepEqual(rs.observe(12, true, true), { from: 13, to: 16 });
});

test('the window doubles only when the reader waited at the blocks of the last doubling, up to maxWindow', () => {
  const rs = streams();
  rs.observe(0, true, true);
  assert.deepEqual(rs.observe(1, true, true), { from: 2, to: 3 }, 'initialWindow (2)');
  assert.deepEqual(rs.observe(2, true, true), { from: 4, to: 6 }, 'waited at the first block ahead: 4');
  assert.deepEqual(rs.observe(3, true, true), { from: 7, to: 7 }, 'waited, but before the blocks the doubling added: still 4');
  assert.deepEqual(rs.observe(4, false, true), { from: 8, to: 8 }, 'at them, but did not wait: still 4');
  assert.deepEqual(rs.observe(5, true, true), { from: 9, to: 13 }, 'at them and waited: 8');
  for (let i = 6; i < 14; i++) assert.deepEqual(rs.observe(i, true, true), { from: i + 8, to: i + 8 }, `read ${i}: capped at 8`);
});

test('initialWindow and parallelWindow larger than maxWindow are cut to it; nothing past the last block', () => {
  const rs = streams({ initialWindow: 20, maxWindow: 5, blockCount: 10 });
  rs.observe(0, true, true);
  assert.deepEqual(rs.observe(1, true, true), { from: 2, to: 6 }, 'initialWindow: 5');
  assert.deepEqual(rs.observe(2, false, true), { from: 7, to: 7 });
  assert.deepEqual(rs.observe(3, false, true), { from: 8, to: 8 });
  assert.deepEqual(rs.observe(4, false, true), { from: 9, to: 9 }, 'the last block is 9');
  assert.deepEqual(rs.observe(5, true, true), { from: 10, to: 9 }, 'nothing left to read ahead');

  const par = streams({ parallelWindow: 20, maxWindow: 5 });
  par.observe(0, true, false);
  assert.deepEqual(par.observe(1, true, false), { from: 2, to: 6 }, 'parallelWindow: 5');
});

test('a reader that never waits keeps its window; a later wait past the mark doubles it', () => {
  const rs = streams();
  rs.observe(0, true, true);
  assert.deepEqual(rs.observe(1, true, true), { from: 2, to: 3 });
  for (let i = 2; i < 50; i++) assert.deepEqual(rs.observe(i, false, true), { from: i + 2, to: i + 2 }, `read ${i}: still 2`);
  assert.deepEqual(rs.observe(50, true, true), { from: 52, to: 54 }, 'waited: 4');
});

test('random reads and strides never trigger read-ahead', () => {
  const random = streams();
  for (const i of [500, 17, 230, 901, 64, 402, 3, 777, 128, 640, 19, 333]) assert.equal(random.observe(i, true, true), undefined, `read ${i}`);
  const strides = streams();
  for (let i = 0; i < 40; i += 2) assert.equal(strides.observe(i, true, true), undefined, `read ${i}`);
});

test('interleaved streams are each followed, up to `streams` of them; one more pushes out the least recent', () => {
  const three = streams({ streams: 3 });
  for (const start of [100, 200, 300]) assert.equal(three.observe(start, true, true), undefined);
  for (const start of [100, 200, 300]) assert.deepEqual(three.observe(start + 1, true, true), { from: start + 2, to: start + 3 });
  for (const start of [100, 200, 300]) assert.deepEqual(three.observe(start + 2, false, true), { from: start + 4, to: start + 4 });

  const four = streams({ streams: 3 });
  for (const start of [100, 200, 300, 400]) assert.equal(four.observe(start, true, true), undefined);
  for (let k = 1; k < 5; k++)
    for (const start of [100, 200, 300, 400]) assert.equal(four.observe(start + k, true, true), undefined, `read ${start + k}: its stream was forgotten`);
});

test('a read just behind a sequential stream (out of order) keeps that stream instead of starting one', () => {
  const rs = streams({ streams: 1 });
  for (let i = 0; i < 4; i++) rs.observe(i, false, true);
  assert.equal(rs.observe(1, true, true), undefined);
  assert.deepEqual(rs.observe(4, false, true), { from: 6, to: 6 }, 'the stream is still there');
});

test('a reader with several reads in flight gets parallelWindow, which never grows; 0 turns it off', () => {
  const rs = streams({ maxWindow: 32 });
  rs.observe(0, true, false);
  assert.deepEqual(rs.observe(1, true, false), { from: 2, to: 4 });
  for (let i = 2; i < 20; i++) assert.deepEqual(rs.observe(i, true, false), { from: i + 3, to: i + 3 }, `read ${i}: still 3`);
  assert.deepEqual(rs.observe(20, true, true), { from: 23, to: 23 }, 'alone again: still parallel');

  const seq = streams({ maxWindow: 32 });
  seq.observe(0, true, true);
  seq.observe(1, true, true);
  assert.deepEqual(seq.observe(2, true, false), { from: 4, to: 5 }, 'a sequential reader seen in parallel drops to parallelWindow');

  const off = streams({ parallelWindow: 0 });
  off.observe(0, true, false);
  for (let i = 1; i < 10; i++) assert.equal(off.observe(i, true, false), undefined);
});

test('blocks the caller had no room for are answered again at the next read', () => {
  const rs = streams({ initialWindow: 4 });
  rs.observe(0, true, true);
  assert.deepEqual(rs.observe(1, true, true), { from: 2, to: 5 });
  rs.notScheduled(3);
  assert.deepEqual(rs.observe(2, false, true), { from: 3, to: 6 });
  assert.deepEqual(rs.observe(3, false, true), { from: 7, to: 7 }, 'then only what is new');
});
