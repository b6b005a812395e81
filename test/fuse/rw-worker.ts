// Child process of the concurrency test: random reads and writes within its
// own stripe of a file, checked against a reference copy it keeps; writes the
// reference to argv[7] at the end. Exits 1 on the first mismatch.
// usage: rw-worker.js FILE STRIPE_START STRIPE_LEN SEED OPS OUT
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';

const [file, startS, lenS, seedS, opsS, out] = process.argv.slice(2);
if (file === undefined || out === undefined) {
  console.error('usage: rw-worker.js FILE STRIPE_START STRIPE_LEN SEED OPS OUT');
  process.exit(2);
}
const start = Number(startS);
const len = Number(lenS);
const ops = Number(opsS);

// mulberry32: small deterministic PRNG (offsets and sizes; data is random)
let state = Number(seedS) >>> 0;
function rnd(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const ref = Buffer.alloc(len);
const fd = openSync(file, 'r+');
try {
  for (let i = 0; i < ops; i++) {
    const size = 1 + Math.floor(rnd() * Math.min(len, 300 * 1024));
    const off = Math.floor(rnd() * (len - size + 1));
    if (rnd() < 0.5) {
      const data = randomBytes(size);
      const n = writeSync(fd, data, 0, size, start + off);
      if (n !== size) throw new Error(`short write ${n}/${size}`);
      data.copy(ref, off);
    } else {
      const got = Buffer.alloc(size);
      const n = readSync(fd, got, 0, size, start + off);
      if (n !== size || !got.equals(ref.subarray(off, off + size))) {
        console.error(`mismatch at ${start + off} (+${size}), read ${n}`);
        process.exit(1);
      }
    }
  }
} finally {
  closeSync(fd);
}
writeFileSync(out, ref);
