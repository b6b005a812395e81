// create, status, verify, erase: commands that work on a volume in S3 with no mount.
import type { Context } from './context.js';
import { S3zError, isS3zError } from '../errors.js';
import { formatSize, parseSize } from '../size.js';
import { countingProgress, listingNotice, progressDisplay } from '../progress-display.js';
import { createDescriptor } from '../volume/descriptor.js';
import { countStored } from '../volume/inventory.js';
import { readLease } from '../volume/lease.js';
import { openVolume, volumeRef, type VolumeRef } from '../volume/volume.js';
import { verifyVolume } from '../volume/verify.js';
import { eraseVolume, leftoverObjects } from '../volume/erase.js';
import { BlockKeys } from '../volume/keys.js';
import { DEFAULT_STORAGE_CLASS, checkSse, checkStorageClass, refusedClass } from '../volume/storage.js';
import { PRICES_SOURCE, formatUsd, monthlyStorageCost } from '../volume/pricing.js';
import { counted } from '../util/words.js';

async function withRef<T>(ctx: Context, url: string, body: (ref: VolumeRef) => Promise<T>): Promise<T> {
  const ref = volumeRef(ctx.s3, url, ctx.log);
  try {
    return await body(ref);
  } finally {
    ref.bucket.destroy();
  }
}

export interface CreateOptions {
  size: string;
  blockSize: string;
  storageClass?: string;
  sse?: string;
  sseKmsKeyId?: string;
}

export async function createCommand(ctx: Context, url: string, opts: CreateOptions): Promise<void> {
  const size = parseSize(opts.size, '--size');
  const blockSize = parseSize(opts.blockSize, '--block-size');
  const storageClass = opts.storageClass === undefined ? DEFAULT_STORAGE_CLASS : checkStorageClass(opts.storageClass);
  const sse = checkSse(opts.sse, opts.sseKmsKeyId);
  await withRef(ctx, url, async (ref) => {
    const left = await leftoverObjects(ref);
    if (left.blocks || left.leases) {
      const what = [left.blocks ? 'block objects' : '', left.leases ? 'leases' : ''].filter(Boolean).join(' and ');
      throw new S3zError(
        'EVOLUMEEXISTS',
        `${ref.url}: no volume there, but ${what} of an earlier one are, which a new volume would take as its own; delete them first with "s3zmount erase --yes ${ref.url}"`,
      );
    }
    const desc = await createDescriptor(ref.bucket, ref.loc, { size, blockSize }, { storageClass, sse }).catch((err: unknown) => {
      throw refusedClass(err, { storageClass, sse }, 'nothing was created');
    });
    const extras = `${desc.storageClass}${desc.sse ? `, SSE ${desc.sse.mode}${desc.sse.kmsKeyId ? ` key ${desc.sse.kmsKeyId}` : ''}` : ''}`;
    process.stdout.write(`created ${ref.url}: ${formatSize(desc.size)} in ${formatSize(desc.blockSize)} blocks, ${extras} (uuid ${desc.uuid})\n`);
  });
}

export async function statusCommand(ctx: Context, url: string, opts: { json?: boolean; pricePerGbMonth?: string }): Promise<void> {
  const price = opts.pricePerGbMonth === undefined ? undefined : Number(opts.pricePerGbMonth);
  if (price !== undefined && (opts.pricePerGbMonth?.trim() === '' || !Number.isFinite(price) || price < 0)) {
    throw new S3zError('EUSAGE', `--price-per-gb-month ${opts.pricePerGbMonth}: expected a price in USD such as 0.0125`);
  }
  await withRef(ctx, url, async (ref) => {
    const vol = await openVolume(ref);
    // A big volume's LIST takes minutes (1000 keys a request): a terminal sees it move.
    const notice = listingNotice('status', { tty: !opts.json && process.stderr.isTTY === true });
    const [stored, lease] = await Promise.all([
      countStored(vol.bucket, vol.keys, (t) => notice.update(t.blocks, t.bytes)),
      readLease(vol.bucket, vol.loc),
    ]).finally(() => notice.clear());
    const d = vol.descriptor;
    const status = {
      url: vol.url, format: d.format, uuid: d.uuid, size: d.size, blockSize: d.blockSize, created: d.created,
      keyLayout: d.keyLayout, blocks: d.size / d.blockSize, blocksStored: stored.blocks, bytesStored: stored.bytes, lease,
      storageClass: d.storageClass, sse: d.sse,
      // Block objects are all one size, so the per-object minimum applies to each alike.
      monthlyCostUsd: monthlyStorageCost(d.storageClass, stored.blocks, d.blockSize, price),
    };
    if (opts.json) {
      process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      return;
    }
    const pct = ((100 * stored.blocks) / status.blocks).toFixed(status.blocks > 1e6 ? 4 : 1);
    process.stdout.write(
      [
        `volume   ${vol.url}`,
        `uuid     ${d.uuid} (format ${d.format}, created ${d.created})`,
        `size     ${formatSize(d.size)} (${d.size} bytes) in ${counted(status.blocks, 'block')} of ${formatSize(d.blockSize)}`,
        `stored   ${counted(stored.blocks, 'block')}, ${formatSize(stored.bytes)} (${pct}% of the device)`,
        `class    ${d.storageClass}${d.sse ? `, SSE ${d.sse.mode}${d.sse.kmsKeyId ? ` key ${d.sse.kmsKeyId}` : ''}` : ''}`,
        `cost     ~${formatUsd(status.monthlyCostUsd)} a month to store (${price === undefined ? PRICES_SOURCE : `at $${price}/GB-month`})`,
        `lease    ${lease ? `held by ${lease.holder} until ${lease.expires}` : 'free'}`,
      ].join('\n') + '\n',
    );
  });
}

export async function verifyCommand(ctx: Context, url: string, opts: { json?: boolean; quiet?: boolean; concurrency: string }): Promise<void> {
  const concurrency = Number(opts.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new S3zError('EUSAGE', '--concurrency must be a whole number from 1 to 256');
  await withRef(ctx, url, async (ref) => {
    const vol = await openVolume(ref);
    const report = await verifyVolume(vol, ctx.log, { concurrency, progress: countingProgress(progressDisplay({ label: 'verify', quiet: (opts.json ?? false) || (opts.quiet ?? false) })) });
    if (opts.json) process.stdout.write(JSON.stringify({ url: vol.url, ...report }, null, 2) + '\n');
    else {
      for (const p of report.problems) process.stdout.write(`BAD  ${p.key}: ${p.problem}\n`);
      process.stdout.write(`${report.checked} block objects checked (${formatSize(report.bytes)}), ${report.problems.length} bad\n`);
    }
    if (report.problems.length > 0) throw new S3zError('ECORRUPT', `${vol.url}: ${report.problems.length} of ${report.checked} block objects failed verification`);
  });
}

export async function eraseCommand(ctx: Context, url: string, opts: { yes?: boolean; force?: boolean; quiet?: boolean }): Promise<void> {
  if (!opts.yes) throw new S3zError('EUSAGE', `erase deletes every block of ${url}: pass --yes to confirm`);
  await withRef(ctx, url, async (ref) => {
    const progress = countingProgress(progressDisplay({ label: 'erase', quiet: opts.quiet ?? false }));
    const vol = await openVolume(ref).catch(async (err: unknown) => {
      // No descriptor: what an earlier volume left is erased all the same (create refuses to adopt it).
      if (!isS3zError(err, 'ENOVOLUME')) throw err;
      const left = await leftoverObjects(ref);
      if (!left.blocks && !left.leases) throw err;
      return undefined;
    });
    const { deleted } = await eraseVolume(vol ?? { ...ref, keys: new BlockKeys(ref.loc) }, { force: opts.force ?? false, progress });
    process.stdout.write(`erased ${ref.url}: ${deleted} block objects and ${vol ? 'the descriptor' : 'the leases an erased volume left'} deleted\n`);
  });
}
