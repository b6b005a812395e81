// The cache's side of direct reads: only eligible blocks are granted (each with its file
// said first), revokes pass through, reads answered below JS come back as uses for
// eviction, and once stopped nothing is granted and the table is disabled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirectGrants } from '../../dist/store/direct-grants.js';
import type { DirectReads } from '../../dist/store/types.js';

function table(): DirectReads & { log: string[]; read: number[] } {
  const log: string[] = [];
  const read: number[] = [];
  return {
    log,
    read,
    file: (file, fd) => void log.push(`file ${file}:${fd}`),
    grant: (i) => (log.push(`grant ${i}`), true),
    revoke: (i) => void log.push(`revoke ${i}`),
    touched: () => read.splice(0),
    disable: () => void log.push('disable'),
  };
}

test('grants only eligible blocks, revokes, reports reads as uses, and stops for good', async () => {
  const eligible = new Set([1, 2, 5]);
  const used: number[] = [];
  const grants = new DirectGrants({ eligible: (i) => eligible.has(i), fileOf: (i) => ({ file: i >> 2, fd: 10 + (i >> 2) }), touched: (i) => used.push(i) });
  grants.grant(1); // before start: no table yet
  const t = table();
  grants.start(t, [1, 3, 5]);
  assert.deepEqual(t.log, ['file 0:10', 'grant 1', 'file 1:11', 'grant 5']);
  grants.start(table(), [2]); // a second start is ignored
  grants.grant(2);
  grants.grant(4);
  grants.revoke(5);
  assert.deepEqual(t.log.slice(4), ['file 0:10', 'grant 2', 'revoke 5']);
  t.read.push(2, 1);
  await sleep(700);
  assert.deepEqual(used, [2, 1], 'reads answered below JS count as uses');
  grants.stop();
  grants.grant(1);
  assert.deepEqual(t.log.slice(7), ['disable'], 'nothing granted once stopped');
  t.read.push(1);
  await sleep(700);
  assert.deepEqual(used, [2, 1], 'no more recency once stopped');
});
