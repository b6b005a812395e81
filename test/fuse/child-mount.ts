// Child process of the lifecycle tests: mounts a MemFs on argv[2], prints
// "ready", then per argv[3]:
//   exit     process.exit(0) at once (the exit hook must detach the mount)
//   signals  unmountOnSignals(session) and wait
//   idle     wait (the test kills it)
// A failed mount prints "error <code> <errno> <message>" and exits 3.
import { mount, unmountOnSignals } from '../../dist/fuse/binding.js';
import { MemFs } from './memfs.js';

const [dir, mode] = process.argv.slice(2);
if (dir === undefined || mode === undefined) {
  console.error('usage: child-mount.js DIR exit|signals|idle');
  process.exit(2);
}
const fs = new MemFs({ size: 4096 });
try {
  const session = await mount(dir, {}, fs.handlers);
  if (mode === 'signals') unmountOnSignals(session);
  console.log('ready');
  if (mode === 'exit') process.exit(0);
  await session.closed;
} catch (err) {
  const e = err as { code?: string; errno?: number; message?: string };
  console.log(`error ${e.code} ${e.errno} ${e.message}`);
  process.exit(3);
}
