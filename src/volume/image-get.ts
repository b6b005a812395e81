// `get`: a volume out to a raw image: a new file (sparse), an existing file kept
// with --force or a block device (compared block by block), or stdout (a stream).
// Walk: the volume's LIST, in step with the block index (StoredCursor):
//   new file     only stored blocks are fetched and written; absent ones stay
//                holes (the file is truncated to the volume's size first)
//   may hold     every block of the target is read first: a stored block whose
//   old data     MD5 equals its listed ETag is left alone (resume: a second run
//                fetches only what is left), an absent block is zeroed only if
//                the target holds non-zero bytes there (a device's old data)
//   stdout       in order, zeros streamed for absent blocks (no holes in a pipe)
// Every fetched block is verified against its SHA-256 by the S3 store before it is
// written, so wrong bytes never reach the image. `get` takes no lease: the caller
// warns if a writer holds it.
// A file or device is written with O_DIRECT where the kernel allows it, from buffers
// aligned for it (util/direct-io.ts): the bytes go from the GET's buffer to the disk,
// not through fresh page cache, and the closing fdatasync has little left to wait for.
import { createHash } from 'node:crypto';
import { mapEach } from '../util/map-each.js';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import type { ProgressDisplay } from '../progress-display.js';
import { S3BlockStore } from '../store/s3-store.js';
import { isZero } from '../store/checksum.js';
import { BlockBuffers } from '../store/block-buffers.js';
import { DIRECT_IO_ALIGN, directOrBuffered, setDirectIO, type DirectState } from '../util/direct-io.js';
import { BackgroundListing, type StoredBlock } from './inventory.js';
import { imageIoError, isResumable, type ImageTarget } from './image-file.js';
import { StoredCursor, etagMatches } from './stored-cursor.js';
import type { Volume } from './volume.js';

export interface GetOptions {
  readonly concurrency: number;
  readonly progress: ProgressDisplay;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Where `-` goes; default process.stdout. */
  readonly stdout?: NodeJS.WritableStream;
}

export interface GetReport {
  readonly size: number;
  readonly fetched: number;
  /** Stored blocks the target already held (resume). */
  readonly unchanged: number;
  /** Absent blocks written as zeros over old data (or streamed, for stdout). */
  readonly zeroed: number;
}

export async function getImage(vol: Volume, target: ImageTarget, opts: GetOptions): Promise<GetReport> {
  const { blockSize, size } = vol.descriptor;
  const blockCount = size / blockSize;
  const store = new S3BlockStore({ blockSize, blockCount, readOnly: true }, vol.bucket, vol.keys, opts.log);
  const counts = { size, fetched: 0, unchanged: 0, zeroed: 0 };
  // Bodies land in buffers used again (one per block in flight) once written out.
  const buffers = new BlockBuffers(blockSize, opts.concurrency + 1, { align: DIRECT_IO_ALIGN });
  const fetch = async (index: number, into: Buffer): Promise<Buffer> => {
    const data = await store.read(index, { into });
    if (data === null) throw new S3zError('EMISSING', `${vol.url}: block ${index} was listed but is gone (is the volume being written?)`);
    counts.fetched++;
    return data;
  };
  // One LIST pass for the totals (1 request per 1000 stored blocks, for an honest ETA),
  // run while the walk below starts on its first pages (a big volume's LIST takes
  // minutes); the walk replays its pages rather than LIST them again.
  const stored = new BackgroundListing(vol.bucket, vol.keys);
  const transfer = async (): Promise<GetReport> => {
    const handle = target.handle;
    if (handle === undefined) {
      await toStream(opts.stdout ?? process.stdout, new StoredCursor(vol.bucket, vol.keys, stored), blockCount, buffers, fetch, opts, counts);
      await counted(stored);
      return counts;
    }
    // Sets the size: a new file is one hole to begin with; a longer old one is cut.
    if (target.kind === 'file') await handle.truncate(size);
    const io: DirectState = { direct: buffers.aligned && setDirectIO(handle.fd, true) };
    opts.log.debug({ target: target.name, direct: io.direct }, 'get: direct I/O');
    const fallback = (err: unknown): void => opts.log.warn({ target: target.name, err: (err as Error).message }, 'direct I/O refused; writing through the page cache');
    const write = (data: Buffer, pos: number): Promise<void> => directOrBuffered(handle.fd, io, () => writeAll(handle, data, pos), fallback);
    const cursor = new StoredCursor(vol.bucket, vol.keys, stored);
    const zeros = io.direct ? buffers.acquire().fill(0) : Buffer.alloc(blockSize);
    const mapper = async (block: { index: number; obj: StoredBlock | undefined }): Promise<void> => {
      const buf = buffers.acquire();
      try {
        await getBlock(block, buf);
      } finally {
        buffers.release(buf);
      }
    };
    /** `buf` holds first what the target has there, then what S3 has. */
    const getBlock = async ({ index, obj }: { index: number; obj: StoredBlock | undefined }, buf: Buffer): Promise<void> => {
      const pos = index * blockSize;
      if (target.mayHoldData) {
        const local = buf;
        const { bytesRead } = await directOrBuffered(handle.fd, io, () => handle.read(local, 0, blockSize, pos), fallback);
        local.fill(0, bytesRead);
        if (obj === undefined) {
          if (!isZero(local)) {
            await write(zeros, pos);
            counts.zeroed++;
          }
          return;
        }
        if (etagMatches(obj.etag, createHash('md5').update(local).digest('hex'))) {
          counts.unchanged++;
          opts.progress.tick(1, blockSize);
          return;
        }
      }
      if (obj === undefined) return;
      const data = await fetch(index, buf);
      // O_DIRECT writes only from the aligned buffer; the S3 store fills it (a copy is a safeguard).
      const inBuf = data.buffer === buf.buffer && data.byteOffset === buf.byteOffset;
      if (!inBuf) data.copy(buf);
      await write(buf, pos);
      opts.progress.tick(1, blockSize);
    };
    const walk = target.mayHoldData ? everyBlock(cursor, blockCount) : storedOnly(cursor, blockCount);
    await mapEach(walk, mapper, { concurrency: opts.concurrency, signal: opts.signal });
    // "Done" means on the disk, for a device above all.
    await handle.datasync();
    await counted(stored);
    return counts;
  };
  const countFailed = (err: unknown): void => opts.log.debug({ err: (err as Error).message }, 'get: counting the stored blocks failed');
  return stored.walkWith(
    opts.progress,
    async () => {
      try {
        return await transfer();
      } catch (err) {
        throw resumable(target, err);
      }
    },
    countFailed,
  );
}

/**
 * A failed get's error, saying that the image is incomplete (a new file already has
 * the volume's size, so it would look whole) and, where running it again can help, how
 * to go on: what is written stays, and the same get (with --force: the file exists now)
 * compares it and fetches the rest. A stream cannot be taken up again.
 */
function resumable(target: ImageTarget, err: unknown): unknown {
  const local = imageIoError(target.name, err);
  if (target.kind === 'stdio' || !(local instanceof S3zError)) return local;
  const how = isResumable(local) ? `; run the same get${target.kind === 'file' ? ' with --force' : ' again'} to go on from where it stopped` : '';
  return new S3zError(local.code, `${local.message}; ${target.name} is incomplete${how}`, { cause: local, errno: local.errno });
}

/** The count has ended (it runs ahead of the walk; this is for a last line with the totals). */
async function counted(listing: BackgroundListing): Promise<void> {
  await listing.totals.catch(() => undefined);
}

async function* everyBlock(cursor: StoredCursor, blockCount: number): AsyncGenerator<{ index: number; obj: StoredBlock | undefined }> {
  for (let index = 0; index < blockCount; index++) yield { index, obj: await cursor.at(index) };
}

async function* storedOnly(cursor: StoredCursor, blockCount: number): AsyncGenerator<{ index: number; obj: StoredBlock | undefined }> {
  for await (const obj of cursor.from(0)) {
    if (obj.index !== undefined && obj.index < blockCount) yield { index: obj.index, obj };
  }
}

async function writeAll(handle: NonNullable<ImageTarget['handle']>, data: Buffer, pos: number): Promise<void> {
  for (let at = 0; at < data.length; ) {
    const { bytesWritten } = await handle.write(data, at, data.length - at, pos + at);
    at += bytesWritten;
  }
}

/** In order, `concurrency` fetches ahead of the writer; zeros for absent blocks. */
async function toStream(
  out: NodeJS.WritableStream, cursor: StoredCursor, blockCount: number, buffers: BlockBuffers,
  fetch: (index: number, into: Buffer) => Promise<Buffer>, opts: GetOptions, counts: { zeroed: number },
): Promise<void> {
  const blockSize = buffers.size;
  const zeros = Buffer.alloc(blockSize);
  const window: { stored: boolean; data: Promise<Buffer>; buf?: Buffer }[] = [];
  let failed: unknown;
  const onError = (err: unknown): void => {
    failed ??= err;
  };
  out.on('error', onError);
  try {
    for (let index = 0; index < blockCount || window.length > 0; ) {
      while (index < blockCount && window.length < opts.concurrency) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        const stored = (await cursor.at(index)) !== undefined;
        const buf = stored ? buffers.acquire() : undefined;
        const data = buf !== undefined ? fetch(index, buf) : Promise.resolve(zeros);
        // Awaited in order below; this only keeps a rejection from counting as unhandled meanwhile.
        data.catch(() => undefined);
        window.push({ stored, data, ...(buf !== undefined ? { buf } : {}) });
        index++;
      }
      const head = window.shift();
      if (head === undefined) break;
      const data = await head.data;
      await new Promise<void>((resolve, reject) => {
        out.write(data, (err) => (err ? reject(err) : resolve()));
      });
      // Written out (the callback comes once the stream is done with it): free to use again.
      if (head.buf !== undefined) buffers.release(head.buf);
      if (failed !== undefined) throw failed;
      if (head.stored) opts.progress.tick(1, blockSize);
      else counts.zeroed++;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') throw new S3zError('EIMAGE', 'stdout: the reader went away before the end of the image', { cause: err });
    throw err;
  } finally {
    out.off('error', onError);
  }
}
