// The JS side of `npm run bench:fuse`: a no-op filesystem served through the
// binding, with the same semantics as native/bench/nullfs.c: one file "data"
// of a fixed virtual size, opened with direct_io; reads answer a preallocated
// pattern buffer of the requested size, writes answer their length.
// It does not keep write payloads, so it borrows them (writeBuffers "borrowed").
// usage: node scripts/bench-fuse/jsfs.js MOUNTPOINT [THREADS] [owned|borrowed]
// Prints "ready" once mounted; SIGTERM/SIGINT unmount cleanly.
import { mount, unmountOnSignals } from '../../dist/fuse/binding.js';

const MIB = 1024 * 1024;
const FILE_SIZE = 64 * 1024 * MIB;
const ROOT = 1;
const FILE = 2;
// A pattern, not zeros: untouched zero pages take a slow path in the kernel, and real
// data never is the zero page. nullfs.c does the same.
const pattern = Buffer.alloc(MIB, 0xa5);
const dir = process.argv[2];
const threads = Number(process.argv[3] ?? 16);
if (!dir) {
  console.error('usage: jsfs.js MOUNTPOINT [THREADS]');
  process.exit(2);
}
const enoent = () => Object.assign(new Error('ENOENT'), { errno: 2 });
const attr = (ino) =>
  ino === ROOT ? { mode: 0o040755, size: 0 } : { mode: 0o100644, size: FILE_SIZE, blocks: FILE_SIZE / 512 };

const writeBuffers = process.argv[4] === 'owned' ? 'owned' : 'borrowed';
const session = await mount(dir, { fsname: 'jsnullfs', subtype: 'jsnullfs', threads, writeBuffers }, {
  lookup(parent, name) {
    if (parent !== ROOT || name !== 'data') throw enoent();
    return { ino: FILE, attr: attr(FILE) };
  },
  getattr(ino) {
    if (ino !== ROOT && ino !== FILE) throw enoent();
    return attr(ino);
  },
  setattr(ino) {
    return attr(ino);
  },
  open() {
    return { directIo: true };
  },
  async read(_ino, _fh, offset, size) {
    const n = Math.max(0, Math.min(size, FILE_SIZE - offset, MIB));
    return pattern.subarray(0, n);
  },
  async write(_ino, _fh, _offset, data) {
    return data.length;
  },
  readdir(_ino, _fh, offset) {
    return [
      { name: '.', ino: ROOT, mode: 0o040000 },
      { name: '..', ino: ROOT, mode: 0o040000 },
      { name: 'data', ino: FILE, mode: 0o100000 },
    ].slice(offset);
  },
});
unmountOnSignals(session);
console.log('ready');
await session.closed;
