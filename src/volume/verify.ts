// `verify`: every block object is checked against the descriptor and its own
// checksum: a key that names no block of this device, a wrong size, a missing or
// wrong checksum. Reads go through the S3 store, so the check is the one a mount makes.
// One LIST pass runs in the background (BackgroundListing): the checks start at its
// first page, keep `concurrency` GETs in flight across page ends, and the progress
// display gets the totals when the pass ends.
import { mapEach } from '../util/map-each.js';
import type { Logger } from '../log.js';
import { isS3zError } from '../errors.js';
import type { ProgressDisplay } from '../progress-display.js';
import { S3BlockStore } from '../store/s3-store.js';
import { BackgroundListing, type StoredBlock } from './inventory.js';
import type { Volume } from './volume.js';

export interface VerifyProblem {
  readonly key: string;
  readonly problem: string;
}

export interface VerifyReport {
  readonly checked: number;
  readonly bytes: number;
  readonly problems: VerifyProblem[];
}

export interface VerifyOptions {
  readonly concurrency?: number;
  /** Fed with increments (countingProgress): one object per tick. */
  readonly progress?: ProgressDisplay;
}

export async function verifyVolume(vol: Volume, log: Logger, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const { blockSize, size } = vol.descriptor;
  const blockCount = size / blockSize;
  const store = new S3BlockStore({ blockSize, blockCount, readOnly: true }, vol.bucket, vol.keys, log);
  const problems: VerifyProblem[] = [];
  let checked = 0;
  let bytes = 0;
  const progress = opts.progress;
  const stored = new BackgroundListing(vol.bucket, vol.keys);
  await stored.walkWith(progress, () =>
    mapEach(
      objects(stored),
      async (o: StoredBlock) => {
        if (o.index === undefined || o.index >= blockCount) {
          problems.push({ key: o.key, problem: o.index === undefined ? 'not a block key' : `block ${o.index} is beyond the end of the device` });
        } else if (o.size !== blockSize) {
          problems.push({ key: o.key, problem: `${o.size} bytes instead of ${blockSize}` });
        } else {
          try {
            // The store refuses (after retries) any block whose checksum does not match.
            if ((await store.read(o.index)) === null) problems.push({ key: o.key, problem: 'listed but gone when read' });
          } catch (err) {
            if (!isS3zError(err, 'ECORRUPT')) throw err;
            problems.push({ key: o.key, problem: err.message });
          }
        }
        checked++;
        bytes += o.size;
        progress?.tick(1, o.size);
      },
      { concurrency: opts.concurrency ?? 16 },
    ),
  );
  problems.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { checked, bytes, problems };
}

/** The listing's objects one by one, across its pages. */
async function* objects(stored: BackgroundListing): AsyncGenerator<StoredBlock> {
  for await (const page of stored.pages()) yield* page;
}
