// What a person at a terminal reads of a log record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readable } from '../../dist/log.js';

test('readable: one line, the level in words, the fields after the message, an error by its message', () => {
  const line = JSON.stringify({ level: 50, time: 1, pid: 7, mount: '/mnt/v', block: 3, err: { type: 'Error', message: 'S3 said no', stack: 'Error: S3 said no\n    at x' }, msg: 'upload failed; will retry' });
  assert.equal(readable(line), 's3zmount: error: upload failed; will retry (mount=/mnt/v, block=3, err=S3 said no)\n');
  assert.equal(readable(JSON.stringify({ level: 40, time: 1, pid: 7, msg: 'stopping' })), 's3zmount: warning: stopping\n');
  assert.equal(readable(JSON.stringify({ level: 30, pid: 7, msg: 'x', flags: { a: 1 } })), 's3zmount: info: x (flags={"a":1})\n');
  assert.equal(readable('not json\n'), 'not json\n', 'a line that is not a record passes as it is');
});
