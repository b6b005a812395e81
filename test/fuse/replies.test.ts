// A session's replies, against a stand-in for the addon's reply calls (no kernel): a
// handler's result of the wrong shape throws before any reply; a slice sent from the
// pool is released once, after it is out, and afterSlices() waits for the last one;
// lent bytes are sent and released at once; an open the kernel gave up on is released here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replies } from '../../dist/fuse/replies.js';
import { FD_QUEUED, FD_SENT, type Native } from '../../dist/fuse/native.js';
import type { ResolvedOptions } from '../../dist/fuse/options.js';
import type { FuseHandlers, HandlerName } from '../../dist/fuse/types.js';

interface Fake {
  calls: string[];
  fdDone: Array<(errno: number) => void>;
  fdResult: number;
  openResult: boolean | 0;
}

function setup(handlers: FuseHandlers = {}) {
  const fake: Fake = { calls: [], fdDone: [], fdResult: FD_QUEUED, openResult: true };
  const native = {
    replyErr: (id: number, errno: number) => (fake.calls.push(`err ${id} ${errno}`), true),
    replyBuf: (id: number, data: Uint8Array) => (fake.calls.push(`buf ${id} ${data.length}`), true),
    replyFd: (id: number, fd: number, pos: number, len: number, done: (errno: number) => void) => {
      fake.calls.push(`fd ${id} ${fd} ${pos} ${len}`);
      if (fake.fdResult === FD_QUEUED) fake.fdDone.push(done);
      return fake.fdResult;
    },
    replyWrite: (id: number, n: number) => (fake.calls.push(`write ${id} ${n}`), true),
    replyOpen: (id: number, fh: number, flags: number) => (fake.calls.push(`open ${id} ${fh} ${flags}`), fake.openResult),
  } as unknown as Native;
  const reported: Array<{ err: unknown; op: HandlerName }> = [];
  const opts = { attrTimeout: 1, entryTimeout: 1 } as unknown as ResolvedOptions;
  const replies = new Replies(native, handlers, opts, (err, op) => reported.push({ err, op }));
  return { fake, replies, reported };
}

function slice(released: { n: number }) {
  return { fd: 7, position: 4096, length: 8192, release: () => void released.n++ };
}

test('a write result that is not a byte count throws before any reply', () => {
  const { fake, replies } = setup();
  assert.throws(() => replies.write(1, -1), TypeError);
  assert.throws(() => replies.write(1, 1.5 as number), TypeError);
  assert.deepEqual(fake.calls, []);
  replies.write(2, 4096);
  assert.deepEqual(fake.calls, ['write 2 4096']);
});

test('a slice sent from the pool is released once, when it is out; afterSlices waits for it', () => {
  const { fake, replies } = setup();
  const released = { n: 0 };
  replies.read(3, slice(released), 8192);
  assert.deepEqual(fake.calls, ['fd 3 7 4096 8192']);
  assert.equal(released.n, 0, 'held while the pool sends it');
  let ended = 0;
  replies.afterSlices(() => void ended++);
  assert.equal(ended, 0, 'a slice is still on the pool');
  fake.fdDone[0]!(0);
  assert.equal(released.n, 1);
  assert.equal(ended, 1);
  assert.deepEqual(replies.sliceReplies, { sentHere: 0, pooled: 1, lent: 0 });
  replies.afterSlices(() => void ended++);
  assert.equal(ended, 2, 'none left: at once');
});

test('a slice sent on this thread is released at once; a failed one is reported', () => {
  const { fake, replies, reported } = setup();
  const released = { n: 0 };
  fake.fdResult = FD_SENT;
  replies.read(4, slice(released), 8192);
  assert.equal(released.n, 1);
  fake.fdResult = FD_QUEUED;
  replies.read(5, slice(released), 8192);
  fake.fdDone[0]!(5);
  assert.equal(released.n, 2);
  assert.equal(reported.length, 1);
  assert.equal(reported[0]!.op, 'read');
  assert.deepEqual(replies.sliceReplies, { sentHere: 1, pooled: 1, lent: 0 });
});

test('a slice longer than the read is refused and still released', () => {
  const { fake, replies } = setup();
  const released = { n: 0 };
  assert.throws(() => replies.read(6, slice(released), 4096));
  assert.equal(released.n, 1);
  assert.deepEqual(fake.calls, []);
});

test('lent bytes are sent as they are and released once the reply is out; bad ones are refused and still released', () => {
  const { fake, replies } = setup();
  const bytes = Buffer.alloc(8192, 1);
  let seenAtRelease = '';
  let released = 0;
  const lent = (b: unknown) => ({
    bytes: b as Uint8Array,
    release: () => {
      released++;
      seenAtRelease = fake.calls.at(-1) ?? '';
    },
  });
  replies.read(10, lent(bytes), 8192);
  assert.deepEqual(fake.calls, ['buf 10 8192']);
  assert.equal(released, 1);
  assert.equal(seenAtRelease, 'buf 10 8192', 'released after the reply');
  assert.throws(() => replies.read(11, lent(bytes), 4096), TypeError, 'longer than the read');
  assert.throws(() => replies.read(12, lent('text'), 8192), TypeError, 'not bytes');
  assert.throws(() => replies.read(13, { bytes } as never, 8192), TypeError, 'no release');
  assert.equal(released, 3, 'refused ones were released too');
  assert.deepEqual(fake.calls, ['buf 10 8192'], 'nothing sent for them');
  assert.deepEqual(replies.sliceReplies, { sentHere: 0, pooled: 0, lent: 1 });
  replies.releaseSlice(lent(bytes));
  assert.equal(released, 4, 'an abandoned request lets go of its lent bytes');
});

test('an open the kernel no longer waits for is released by the handler', async () => {
  const releases: Array<[number, number, number]> = [];
  const { fake, replies } = setup({ release: (ino, fh, flags) => void releases.push([ino, fh, flags]) });
  replies.open(7, { fh: 9 }, 2, 0o2);
  assert.deepEqual(releases, []);
  fake.openResult = 0;
  replies.open(8, { fh: 10 }, 2, 0o2);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(releases, [[2, 10, 0o2]]);
  assert.throws(() => replies.open(9, 'x' as never, 2, 0), TypeError);
});
