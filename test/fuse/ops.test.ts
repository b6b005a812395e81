// DeviceOps (src/fuse/ops.ts) over a stub range store: a write that spans blocks
// settles only once every block's part has, even when one fails at once, so nothing
// reads the caller's buffer after the reply (the daemon's lent FUSE write buffers are
// reused for the next write from then on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceOps } from '../../dist/fuse/ops.js';
import { silentLogger } from '../../dist/log.js';
import { S3zError } from '../../dist/errors.js';
import type { RangeStore } from '../../dist/store/types.js';

const BS = 4096;

function stubStore(writeRange: RangeStore['writeRange']): RangeStore {
  return {
    blockSize: BS,
    blockCount: 4,
    read: async () => null,
    write: async () => {},
    flush: async () => {},
    close: async () => {},
    readRange: async () => null,
    writeRange,
  };
}

for (const zero of [false, true]) {
  test(`a ${zero ? 'zeroing' : 'write'} across two blocks whose first part fails at once rejects only after the second part finished`, async () => {
    const events: string[] = [];
    const store = stubStore(async (index, _at, data) => {
      if (index === 0) {
        events.push('part 0 failed');
        throw new S3zError('ENOSPACE', 'no room');
      }
      await new Promise((r) => setTimeout(r, 40));
      // Still reading the caller's buffer here.
      events.push(`part 1 done (${data === null ? 'zeros' : data.length})`);
    });
    const ops = new DeviceOps(store, { readOnly: false, stats: () => '{}', log: silentLogger });
    const result = zero ? ops.zero(BS - 512, 1024) : ops.write(BS - 512, Buffer.alloc(1024, 7));
    await assert.rejects(
      result.finally(() => events.push('settled')),
      /no room/,
    );
    assert.deepEqual(events, ['part 0 failed', `part 1 done (${zero ? 'zeros' : 512})`, 'settled']);
  });
}
