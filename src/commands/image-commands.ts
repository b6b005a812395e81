// put and get: a raw image into or out of a volume, no mount needed. The work is
// in volume/image-put.ts and volume/image-get.ts; here: options, the local file,
// Ctrl-C (stops cleanly: the lease is released and a rerun does what is left),
// and the one summary line.
import type { Context } from './context.js';
import { S3zError } from '../errors.js';
import { formatSize } from '../size.js';
import { countingProgress, progressDisplay } from '../progress-display.js';
import { openSource, openTarget } from '../volume/image-file.js';
import { putImage } from '../volume/image-put.js';
import { getImage } from '../volume/image-get.js';
import { readLease } from '../volume/lease.js';
import { openVolume, volumeRef } from '../volume/volume.js';
import { keepFreedMemory } from '../util/memory.js';
import { warmHashing } from '../store/checksum.js';
import { counted } from '../util/words.js';

export interface ImageCommandOptions {
  concurrency: string;
  quiet?: boolean;
  force?: boolean;
}

function concurrencyOf(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new S3zError('EUSAGE', '--concurrency must be a whole number from 1 to 256');
  return n;
}

/** Blocks in memory at once (one per request in flight) stay under this, whatever --concurrency says. */
const MAX_IN_FLIGHT_BYTES = 512 * 1024 ** 2;

export function inFlight(concurrency: number, blockSize: number): number {
  return Math.max(1, Math.min(concurrency, Math.floor(MAX_IN_FLIGHT_BYTES / blockSize)));
}

/** Aborts on the first SIGINT/SIGTERM; a second one kills as usual. */
async function interruptible<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const stop = (sig: NodeJS.Signals): void => {
    ac.abort(new S3zError('EIMAGE', `interrupted (${sig}); run the same command again to do what is left`));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await body(ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export async function putCommand(ctx: Context, image: string, url: string, opts: ImageCommandOptions): Promise<void> {
  const concurrency = concurrencyOf(opts.concurrency);
  keepFreedMemory();
  // The hashing threads boot (~100 ms) while the volume and the lease are looked at.
  warmHashing();
  const ref = volumeRef(ctx.s3, url, ctx.log);
  const src = await openSource(image).catch((err: unknown) => {
    ref.bucket.destroy();
    throw err;
  });
  try {
    const vol = await openVolume(ref);
    const report = await interruptible((signal) =>
      putImage(vol, src, { concurrency: inFlight(concurrency, vol.descriptor.blockSize), force: opts.force ?? false, progress: countingProgress(progressDisplay({ label: 'put', quiet: opts.quiet ?? false })), log: ctx.log, signal }),
    );
    process.stdout.write(
      `put ${src.name} into ${vol.url}: ${formatSize(report.bytes)} in ${counted(report.blocks, 'block')}; ` +
        `${report.uploaded} uploaded, ${report.unchanged} unchanged, ${report.zero} zero, ${report.deleted} deleted\n`,
    );
  } finally {
    await src.handle?.close();
    // stdin may still be open (an image refused as too large): it must not keep the process up.
    if (src.kind === 'stdio') process.stdin.destroy();
    ref.bucket.destroy();
  }
}

export async function getCommand(ctx: Context, url: string, image: string, opts: ImageCommandOptions): Promise<void> {
  const concurrency = concurrencyOf(opts.concurrency);
  keepFreedMemory();
  // The hashing threads boot (~100 ms) while the volume and the lease are looked at.
  warmHashing();
  const ref = volumeRef(ctx.s3, url, ctx.log);
  try {
    // The volume first: a missing volume must not leave an empty image behind.
    const vol = await openVolume(ref);
    const target = await openTarget(image, vol.descriptor.size, opts.force ?? false);
    try {
      const lease = await readLease(vol.bucket, vol.loc);
      if (lease) process.stderr.write(`s3zmount: warning: ${vol.url} is mounted read-write by ${lease.holder}; the image may mix blocks from before and after its writes\n`);
      const report = await interruptible((signal) =>
        getImage(vol, target, { concurrency: inFlight(concurrency, vol.descriptor.blockSize), progress: countingProgress(progressDisplay({ label: 'get', quiet: opts.quiet ?? false })), log: ctx.log, signal }),
      );
      // With "-" stdout is the image: the summary goes to stderr, and only when not quiet.
      const summary =
        `got ${vol.url} into ${target.name}: ${formatSize(report.size)}; ${counted(report.fetched, 'block')} fetched, ` +
        `${report.unchanged} already there, ${report.zeroed} zeroed\n`;
      if (target.kind !== 'stdio') process.stdout.write(summary);
      else if (!opts.quiet) process.stderr.write(summary);
    } finally {
      await target.handle?.close();
    }
  } finally {
    ref.bucket.destroy();
  }
}
