// keepFreedMemory (src/util/memory.ts over native/s3zproc.c): once asked, glibc keeps
// freed memory and grows the heap in TOP_PAD_BYTES steps. Seen from outside in a child
// process: the [heap] mapping of /proc/self/maps grows by ~16 MiB at a time, against a
// few hundred KiB without the call. In under 1% of processes here another mapping lands
// right at the heap's end, so the heap cannot grow in place (glibc then maps memory
// elsewhere and [heap] stays as it is): that process says so, and a fresh one is asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { keepFreedMemory, TOP_PAD_BYTES } from '../../dist/util/memory.js';

const MEMORY = fileURLToPath(new URL('../../dist/util/memory.js', import.meta.url));

/**
 * The first three growth steps of the heap, in bytes, in a fresh process allocating 64 KiB
 * buffers; a fresh process again while one finds its heap walled in by another mapping.
 */
function heapSteps(keep: boolean): number[] {
  const script = `
    import { keepFreedMemory } from ${JSON.stringify(MEMORY)};
    import { readFileSync } from 'node:fs';
    const heap = () => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) .*\\[heap\\]$/m.exec(readFileSync('/proc/self/maps', 'utf8'));
      return m ? { start: parseInt(m[1], 16), end: parseInt(m[2], 16) } : { start: 0, end: 0 };
    };
    if (${keep} && !keepFreedMemory()) throw new Error('refused');
    const sizes = [heap().end - heap().start];
    const held = [];
    for (let i = 0; i < 4000 && sizes.length < 4; i++) {
      held.push(Buffer.allocUnsafeSlow(64 * 1024));
      const { start, end } = heap();
      if (end - start !== sizes[sizes.length - 1]) sizes.push(end - start);
    }
    const end = heap().end.toString(16).padStart(8, '0');
    const walled = sizes.length === 1 && readFileSync('/proc/self/maps', 'utf8').split('\\n').some((l) => l.startsWith(end + '-'));
    console.log(JSON.stringify({ walled, steps: sizes.slice(1).map((h, i) => h - sizes[i]) }));`;
  for (let attempt = 1; ; attempt++) {
    const r = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { walled: boolean; steps: number[] };
    if (!r.walled || attempt === 5) return r.steps;
  }
}

test('after keepFreedMemory the heap grows in TOP_PAD_BYTES steps; without it, in small ones', () => {
  const kept = heapSteps(true);
  assert.equal(kept.length, 3, `the heap grew three times (${kept})`);
  for (const step of kept) assert.ok(step >= TOP_PAD_BYTES, `step of ${step} bytes`);
  const plain = heapSteps(false);
  assert.ok(plain.length > 0 && plain.every((step) => step < TOP_PAD_BYTES / 4), `default steps ${plain}`);
});

test('keepFreedMemory checks its arguments before the native call', () => {
  assert.throws(() => keepFreedMemory(-1, 0), RangeError);
  assert.throws(() => keepFreedMemory(2 ** 31, 0), RangeError);
  assert.throws(() => keepFreedMemory(1024, 1.5), RangeError);
  assert.equal(keepFreedMemory(), true);
});
