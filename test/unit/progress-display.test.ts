// The progress display on a terminal and in plain lines, with the totals known at
// start and learnt later (setTotal), on a fake stream and a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { listingNotice, progressDisplay } from '../../dist/progress-display.js';

const MIB = 1 << 20;
/** cli-progress draws on its own timer (5 frames a second here), not at each update. */
const frame = () => new Promise((r) => setTimeout(r, 450));

/** A writable that keeps what was written; a terminal when tty is true. */
function sink(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const w = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { isTTY: boolean; columns: number };
  w.isTTY = tty;
  w.columns = 200;
  return { stream: w, text: () => out };
}

/** The last frame cli-progress drew: the text after the last carriage return or cursor move, ANSI codes stripped. */
function lastFrame(text: string): string {
  // eslint-disable-next-line no-control-regex
  const plain = text.replace(/\x1b(\[[0-9;?]*[A-Za-z]|[78])/g, '\r');
  const frames = plain.split(/[\r\n]/).filter((f) => f.trim() !== '');
  return frames[frames.length - 1] ?? '';
}

test('a terminal bar shows ?% and an empty bar until the total is known, then the share done', async () => {
  let now = 0;
  const { stream, text } = sink(true);
  const d = progressDisplay({ label: 'get', stream, tty: true, now: () => now });
  d.start(0, 0);
  now = 1000;
  d.tick(30, 30 * MIB);
  await frame();
  const unknown = lastFrame(text());
  assert.match(unknown, /^get \[░+\] \?% \| 30\/\? blocks \| 30 MiB\/\? \| [\d.]+ MB\/s \| ETA \?$/, unknown);

  d.setTotal(120, 120 * MIB);
  await frame();
  const known = lastFrame(text());
  assert.match(known, /^get \[█{10}░{30}\] 25% \| 30\/120 blocks \| 30 MiB\/120 MiB \| [\d.]+ MB\/s \| ETA \d+s$/, known);

  now = 2000;
  d.tick(120, 120 * MIB);
  d.done();
  assert.match(lastFrame(text()), /^get \[█{40}\] 100% \| 120\/120 blocks \| 120 MiB\/120 MiB \| .* ETA 0s$/);
});

test('plain lines say ? for the totals until they are known, and done() makes what was done the total', () => {
  let now = 0;
  const { stream, text } = sink(false);
  const d = progressDisplay({ label: 'put', stream, tty: false, intervalMs: 1000, now: () => now });
  d.start(0, 0);
  now = 1500;
  d.tick(3, 3 * MIB);
  d.done();
  const lines = text().trim().split('\n');
  assert.match(lines[0]!, /^put: 3\/\? blocks, 3 MiB\/\? \(\?%\), [\d.]+ MB\/s, ETA \?$/, text());
  assert.match(lines[1]!, /^put: 3\/3 blocks, 3 MiB\/3 MiB \(100%\), [\d.]+ MB\/s, ETA 0s$/, text());
  assert.equal(lines.length, 2);
});

test('the listing notice: nothing off a terminal or before its delay, then one line rewritten in place, erased by clear()', () => {
  let now = 0;
  const off = sink(false);
  const n0 = listingNotice('status', { stream: off.stream, tty: false, now: () => now });
  now = 5000;
  n0.update(1000, 1000 * MIB);
  n0.clear();
  assert.equal(off.text(), '');

  now = 0;
  const on = sink(true);
  const n = listingNotice('status', { stream: on.stream, tty: true, delayMs: 1000, now: () => now });
  now = 500;
  n.update(1000, 1000 * MIB);
  assert.equal(on.text(), '', 'a count over within the delay shows nothing');
  n.clear();
  assert.equal(on.text(), '', 'and erases nothing');
  now = 1500;
  n.update(2000, 2000 * MIB);
  n.update(3000, 3000 * MIB);
  assert.equal(on.text(), '\rstatus: listing the volume, 2000 blocks (2 GiB) so far\x1b[K\rstatus: listing the volume, 3000 blocks (2.9 GiB) so far\x1b[K');
  n.clear();
  assert.ok(on.text().endsWith('\r\x1b[K'));
});
