// `put`: a raw image (file, block device or stdin) into a volume, sending only
// what differs from what S3 holds.
// Walk: the image is read block by block into buffers used again once the block
// is sent (block-buffers.ts: no allocation, and the hash workers read them in place),
// with O_DIRECT where the kernel allows it (util/direct-io.ts: no page cache); the
// volume's LIST is walked in step (StoredCursor), so each block meets its stored
// object, if any, with one LIST request per 1000 stored blocks and no HEAD:
//   all zeros          -> nothing to send; its object, if stored, is deleted
//   MD5 = listed ETag  -> unchanged, no request (ETag is the MD5 of a single-part body;
//                         hashed off the main thread, as SHA-256 is)
//   otherwise          -> PUT through the S3 store (SHA-256 off the main thread)
// then every stored block past the image's end is deleted, so the rest of the
// volume reads as zeros. A run cut short leaves each block either old or new, and
// the next run sends only what still differs: that is the resume.
// Invariants: the write lease is held from before the first request that changes
// the volume until after the last one settles; an empty image changes nothing
// without --force (checked before any delete); an image larger than the volume
// changes nothing (checked before the lease for a file, at the first extra byte
// for stdin, which may by then have sent earlier blocks: they are valid blocks of
// the image's start, and the next run compares them like any other).
import { hostname, userInfo } from 'node:os';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { ProgressDisplay } from '../progress-display.js';
import { S3BlockStore } from '../store/s3-store.js';
import { isZero, md5Of } from '../store/checksum.js';
import { BlockBuffers } from '../store/block-buffers.js';
import { DIRECT_IO_ALIGN, directOrBuffered, setDirectIO, type DirectState } from '../util/direct-io.js';
import { mapEach } from '../util/map-each.js';
import { LeaseHolder } from './lease.js';
import { imageIoError, withResumeHint, type ImageSource } from './image-file.js';
import { StoredCursor, etagMatches } from './stored-cursor.js';
import type { StoredBlock } from './inventory.js';
import type { Volume } from './volume.js';

export interface PutOptions {
  readonly concurrency: number;
  /** Break a live lease (a mount that is gone), and put an empty image. */
  readonly force: boolean;
  readonly progress: ProgressDisplay;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** How long the lease lives without renewal; tests shorten it. */
  readonly leaseTtlMs?: number;
}

export interface PutReport {
  /** Blocks of the image (its size rounded up to whole blocks). */
  readonly blocks: number;
  readonly bytes: number;
  readonly uploaded: number;
  readonly unchanged: number;
  readonly zero: number;
  /** Objects deleted: blocks that became zero, and stored blocks past the image's end. */
  readonly deleted: number;
}

interface ImageBlock {
  readonly index: number;
  readonly data: Buffer;
  /** Bytes of the image in this block (less than the block for a short last one). */
  readonly length: number;
}

const DELETE_BATCH = 1000;

export async function putImage(vol: Volume, src: ImageSource, opts: PutOptions): Promise<PutReport> {
  const { blockSize, size: volumeSize } = vol.descriptor;
  if (src.size !== undefined && src.size > volumeSize) {
    throw new S3zError('EIMAGE', `${src.name}: the image is ${src.size} bytes, larger than the volume ${vol.url} (${volumeSize} bytes)`);
  }
  if (src.size === 0 && !opts.force) throw emptyImage(src.name);
  const lease = await LeaseHolder.acquire(
    vol.bucket, vol.loc,
    { holder: holderName(src.name), ttlMs: opts.leaseTtlMs ?? 60_000, force: opts.force, settleMs: 200 },
    opts.log,
  );
  try {
    return await transfer(vol, src, opts);
  } finally {
    await lease.release().catch((err: unknown) => opts.log.warn({ err: (err as Error).message }, 'could not release the lease; it expires by itself'));
  }
}

async function transfer(vol: Volume, src: ImageSource, opts: PutOptions): Promise<PutReport> {
  const { blockSize, size: volumeSize } = vol.descriptor;
  const blockCount = volumeSize / blockSize;
  const store = new S3BlockStore({ blockSize, blockCount, readOnly: false }, vol.bucket, vol.keys, opts.log);
  const cursor = new StoredCursor(vol.bucket, vol.keys);
  const counts = { blocks: 0, bytes: 0, uploaded: 0, unchanged: 0, zero: 0, deleted: 0 };
  const doomed: string[] = [];
  const deleteSome = async (all: boolean): Promise<void> => {
    while (doomed.length >= (all ? 1 : DELETE_BATCH)) {
      const batch = doomed.splice(0, DELETE_BATCH);
      await vol.bucket.deleteMany(batch);
      counts.deleted += batch.length;
    }
  };

  const sendBlock = async (b: ImageBlock & { stored: StoredBlock | undefined }): Promise<void> => {
    counts.blocks = Math.max(counts.blocks, b.index + 1);
    counts.bytes += b.length;
    if (isZero(b.data)) {
      counts.zero++;
      if (b.stored !== undefined) {
        doomed.push(b.stored.key);
        await deleteSome(false);
      }
    } else if (b.stored !== undefined && b.stored.size === blockSize && etagMatches(b.stored.etag, (await md5Of(b.data)).toString('hex'))) {
      counts.unchanged++;
    } else {
      await store.write(b.index, b.data);
      counts.uploaded++;
    }
    opts.progress.tick(1, b.length);
  };

  // One buffer per block in flight, and the one being read.
  const buffers = new BlockBuffers(blockSize, opts.concurrency + 2, { align: DIRECT_IO_ALIGN });
  const io: DirectState = { direct: src.handle !== undefined && buffers.aligned && setDirectIO(src.handle.fd, true) };
  if (src.handle !== undefined) opts.log.debug({ source: src.name, direct: io.direct }, 'put: direct I/O');
  const fallback = (err: unknown): void => opts.log.warn({ source: src.name, err: (err as Error).message }, 'direct I/O refused; reading through the page cache');
  async function* withStored(): AsyncGenerator<ImageBlock & { stored: StoredBlock | undefined }> {
    const blocks = src.handle === undefined ? stdinBlocks(blockSize, volumeSize, src.name, buffers) : fileBlocks(src, blockSize, buffers, io, fallback);
    for await (const b of blocks) yield { ...b, stored: await cursor.at(b.index) };
  }

  opts.progress.start(src.size === undefined ? 0 : Math.ceil(src.size / blockSize), src.size ?? 0);
  let ok = false;
  try {
    await mapEach(
      withStored(),
      async (b) => {
        try {
          await sendBlock(b);
        } finally {
          // The store only borrowed it: its write has settled.
          buffers.release(b.data);
        }
      },
      { concurrency: opts.concurrency, signal: opts.signal },
    );
    // Known only now for stdin; before the first delete of a block past its end.
    if (counts.bytes === 0 && !opts.force) throw emptyImage(src.name);
    // The rest of the volume must read as zeros.
    for await (const b of cursor.from(counts.blocks)) {
      if (b.index !== undefined && b.index < blockCount) doomed.push(b.key);
      await deleteSome(false);
    }
    await deleteSome(true);
    ok = true;
  } catch (err) {
    // Every block is old or new in S3: the next run compares and sends only the rest.
    throw withResumeHint(imageIoError(src.name, err), 'run the same put again: it sends only what still differs');
  } finally {
    opts.progress.done(ok);
  }
  return counts;
}

/**
 * Block by block into buffers from `buffers`; each goes back once its block is sent.
 * Under O_DIRECT (`io`) every read asks for the rest of the block, a length O_DIRECT
 * accepts even for a short last block (the read stops at the file's end). A read it
 * refuses (after a short one, in a file that shrank) is done again buffered.
 */
async function* fileBlocks(src: ImageSource, blockSize: number, buffers: BlockBuffers, io: DirectState, fallback: (err: unknown) => void): AsyncGenerator<ImageBlock> {
  const handle = src.handle;
  const size = src.size ?? 0;
  if (handle === undefined) return;
  for (let pos = 0, index = 0; pos < size; pos += blockSize, index++) {
    const want = Math.min(blockSize, size - pos);
    const block = buffers.acquire();
    let got = 0;
    while (got < want) {
      const { bytesRead } = await directOrBuffered(handle.fd, io, () => handle.read(block, got, (io.direct ? blockSize : want) - got, pos + got), fallback);
      if (bytesRead === 0) throw new S3zError('EIMAGE', `${src.name}: ended at ${pos + got} bytes, before its size ${size} (did it shrink?)`);
      got += bytesRead;
    }
    block.fill(0, want);
    yield { index, data: block, length: want };
  }
}

async function* stdinBlocks(blockSize: number, volumeSize: number, name: string, buffers: BlockBuffers): AsyncGenerator<ImageBlock> {
  let index = 0;
  let block = buffers.acquire();
  let filled = 0;
  for await (const piece of process.stdin as AsyncIterable<Buffer>) {
    for (let at = 0; at < piece.length; ) {
      if (index * blockSize + filled >= volumeSize) {
        throw new S3zError('EIMAGE', `${name}: the image is larger than the volume (${volumeSize} bytes)`);
      }
      const n = Math.min(piece.length - at, blockSize - filled);
      piece.copy(block, filled, at, at + n);
      filled += n;
      at += n;
      if (filled === blockSize) {
        yield { index: index++, data: block, length: blockSize };
        block = buffers.acquire();
        filled = 0;
      }
    }
  }
  if (filled > 0) {
    block.fill(0, filled);
    yield { index, data: block, length: filled };
  } else {
    buffers.release(block);
  }
}

/** An empty image would delete every stored block: most often a pipe whose writer failed. */
function emptyImage(name: string): S3zError {
  return new S3zError('EIMAGE', `${name}: the image is empty; nothing was changed (--force puts it anyway, deleting every stored block)`);
}

function holderName(image: string): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry
  }
  return `${user}@${hostname()} pid ${process.pid} running "s3zmount put ${image}"`;
}
