// The zero map's sparse bitmap on its own: bits either side of a chunk boundary and far
// out stay apart, a chunk is freed when its last bit clears, counts follow the bits, and
// the stored chunk values (the LMDB format) load back to the same bits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SparseBitmap, CHUNK_BITS, CHUNK_BYTES, chunkOf } from '../../dist/store/sparse-bitmap.js';

const SIZE = 2 ** 32; // a 16 TiB device of 4 KiB blocks: far too big for a whole bitmap
const EDGES = [0, CHUNK_BITS - 1, CHUNK_BITS, 2 ** 31];

test('bits either side of a chunk boundary and far out are set, read and cleared apart', () => {
  const bits = new SparseBitmap(SIZE);
  for (const i of EDGES) assert.equal(bits.set(i, true), true, `${i} changed`);
  for (const i of EDGES) assert.equal(bits.has(i), true, `${i} set`);
  for (const i of [1, CHUNK_BITS - 2, CHUNK_BITS + 1, 2 * CHUNK_BITS - 1, 2 ** 31 - 1, 2 ** 31 + 1]) assert.equal(bits.has(i), false, `${i} clear`);
  assert.equal(bits.count, 4);
  assert.equal(bits.chunks, 3, 'blocks 0 and 32767 share a chunk');
  assert.deepEqual([...bits.indices()], EDGES, 'ascending');

  assert.equal(bits.set(CHUNK_BITS - 1, false), true);
  assert.equal(bits.has(CHUNK_BITS - 1), false);
  assert.equal(bits.has(0), true, 'its neighbour in the chunk is kept');
  assert.equal(bits.has(CHUNK_BITS), true, 'the next chunk is not touched');
  assert.equal(bits.count, 3);
  assert.deepEqual([...bits.indices()], [0, CHUNK_BITS, 2 ** 31]);
});

test('set() reports a change only when the bit changes', () => {
  const bits = new SparseBitmap(SIZE);
  assert.equal(bits.set(5, false), false, 'clearing a clear bit');
  assert.equal(bits.chunks, 0, 'allocates nothing');
  assert.equal(bits.set(5, true), true);
  assert.equal(bits.set(5, true), false, 'setting a set bit');
  assert.equal(bits.count, 1);
  assert.equal(bits.has(5.5), false, 'not a block');
  assert.equal(bits.has(-1), false);
});

test('a chunk whose last bit clears is freed, so memory does not grow with churn', () => {
  const bits = new SparseBitmap(SIZE);
  for (let round = 0; round < 100; round++) {
    const base = round * 7919 * CHUNK_BITS; // a different chunk each round
    bits.set(base, true);
    bits.set(base + CHUNK_BITS - 1, true);
    assert.equal(bits.chunks, 1);
    bits.set(base, false);
    assert.equal(bits.chunks, 1, 'one bit left: kept');
    bits.set(base + CHUNK_BITS - 1, false);
    assert.equal(bits.chunks, 0, 'last bit cleared: freed');
    assert.equal(bits.stored(chunkOf(base)), undefined, 'nothing to store: its value is removed');
  }
  assert.equal(bits.count, 0);
  assert.deepEqual([...bits.indices()], []);
});

test('stored chunk values load back to the same bits and counts', () => {
  const a = new SparseBitmap(SIZE);
  const set = [...EDGES, 3, 4, 8, CHUNK_BITS + 9, SIZE - 1];
  for (const i of set) a.set(i, true);
  const keys = [...new Set(set.map(chunkOf))];
  const values = keys.map((key) => [key, a.stored(key)!] as const);
  for (const [, v] of values) assert.equal(v.length, CHUNK_BYTES);

  // The format cache dirs already hold: bit i of a chunk in byte i >> 3, mask 1 << (i & 7).
  const first = a.stored(0)!;
  assert.equal(first[0], 0b0001_1001, 'blocks 0, 3, 4');
  assert.equal(first[1], 0b0000_0001, 'block 8');
  assert.equal(first[CHUNK_BYTES - 1], 0b1000_0000, 'block 32767');

  const b = new SparseBitmap(SIZE);
  for (const [key, v] of values) assert.equal(b.load(key, v), true);
  assert.deepEqual([...b.indices()], [...a.indices()]);
  assert.equal(b.count, set.length);
  assert.equal(b.chunks, a.chunks);

  // A copy each way: later changes on one side do not show on the other.
  first[0] = 0;
  assert.equal(a.has(0), true);
  b.set(3, false);
  assert.equal(a.has(3), true);
});

test('load() refuses what stored() could not have written, and skips empty chunks', () => {
  const size = 3 * CHUNK_BITS;
  const bits = new SparseBitmap(size);
  const full = new Uint8Array(CHUNK_BYTES).fill(0xff);
  assert.equal(bits.load(3, full), false, 'past the device');
  assert.equal(bits.load(-1, full), false);
  assert.equal(bits.load(1.5, full), false);
  assert.equal(bits.load(0, full.subarray(1)), false, 'short value');
  assert.equal(bits.count, 0, 'nothing taken in');
  assert.equal(bits.load(1, new Uint8Array(CHUNK_BYTES)), true, 'empty: fine');
  assert.equal(bits.chunks, 0, 'but holds no memory');
  assert.equal(bits.load(2, full), true);
  assert.equal(bits.count, CHUNK_BITS);
  assert.equal(bits.has(3 * CHUNK_BITS - 1), true);
  bits.clear();
  assert.equal(bits.count, 0);
  assert.equal(bits.chunks, 0);
  assert.equal(bits.has(2 * CHUNK_BITS), false);
});
