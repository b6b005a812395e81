// The English of the lines people read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { counted, withArticle } from '../../dist/util/words.js';

test('counted: singular for one, plural otherwise, an irregular plural when given', () => {
  assert.equal(counted(1, 'block'), '1 block');
  assert.equal(counted(0, 'block'), '0 blocks');
  assert.equal(counted(12, 'block'), '12 blocks');
  assert.equal(counted('1', 'block'), '1 block');
  assert.equal(counted('?', 'block'), '? blocks');
  assert.equal(counted(1, 'miss', 'misses'), '1 miss');
  assert.equal(counted(3, 'miss', 'misses'), '3 misses');
});

test('withArticle: "an" before a vowel', () => {
  assert.equal(withArticle('overlay'), 'an overlay');
  assert.equal(withArticle('read-only'), 'a read-only');
  assert.equal(withArticle('read-write'), 'a read-write');
});
