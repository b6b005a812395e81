// 8 concurrent reader-writer processes at random offsets, each in its own
// stripe and checking every read against its own reference; the final file
// must equal the stripes' references put together.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fuseAvailable, MIB, mountMemFs, run } from './helpers.js';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'rw-worker.js');
const WORKERS = 8;
const STRIPE = MIB + 4096 * 3 + 17; // stripes do not line up with pages
const OPS = 150;

const CASES = [
  { directIo: true, writeBuffers: 'owned' },
  { directIo: true, writeBuffers: 'borrowed' },
  { directIo: false, writeBuffers: 'owned' },
  { directIo: false, writeBuffers: 'borrowed' },
  { directIo: false, writeBuffers: 'lent' },
] as const;

for (const { directIo, writeBuffers } of CASES) {
  test(`${WORKERS} concurrent readers and writers at random offsets match a reference (direct_io ${directIo}, ${writeBuffers} write buffers)`, async (t) => {
    if (!fuseAvailable(t)) return;
    const { file, fs, base } = await mountMemFs(t, { writeBuffers }, { size: WORKERS * STRIPE, directIo });
    const results = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        run(process.execPath, [WORKER, file, String(i * STRIPE), String(STRIPE), String(1000 + i), String(OPS), join(base, `ref-${i}`)]),
      ),
    );
    results.forEach((r, i) => assert.equal(r.code, 0, `worker ${i}: ${r.stderr}`));
    const expected = Buffer.concat(await Promise.all(Array.from({ length: WORKERS }, (_, i) => readFile(join(base, `ref-${i}`)))));
    assert.equal(expected.length, WORKERS * STRIPE);
    assert.ok(fs.content.equals(expected), 'the filesystem holds what the workers wrote');
    assert.ok((await readFile(file)).equals(expected), 'and reads it back through the mount');
    if (directIo) assert.ok(fs.readSizes.length > 0 && fs.writeSizes.length > 0);
  });
}
