// Where and how a volume's block objects are kept in S3: storage class and
// server-side encryption (SSE), as recorded in the descriptor and sent on PUTs.
// Invariant: a volume is readable on demand, so a class whose objects need a
// restore before a GET (GLACIER, DEEP_ARCHIVE) is never accepted, here or in a
// descriptor; every refusal is an EUSAGE line naming the flag. A class or SSE the
// server refuses is found before anything depends on it: by the descriptor's PUT at
// create, by a probe PUT at a mount that overrides the class.
import { S3zError } from '../errors.js';
import type { S3Bucket } from '../s3/bucket.js';
import { keyUnder, type S3Location } from '../s3/url.js';

/** Classes a block can be written in and read back from with a plain GET. */
export const STORAGE_CLASSES = ['STANDARD', 'INTELLIGENT_TIERING', 'STANDARD_IA', 'ONEZONE_IA', 'GLACIER_IR'] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];
export const DEFAULT_STORAGE_CLASS: StorageClass = 'STANDARD';

/** Classes AWS only serves after a RestoreObject: hours of waiting before ZFS could read a block. */
const RESTORE_CLASSES = ['GLACIER', 'DEEP_ARCHIVE'];

export const SSE_MODES = ['AES256', 'aws:kms'] as const;
export type SseMode = (typeof SSE_MODES)[number];

export interface Sse {
  readonly mode: SseMode;
  /** aws:kms only; absent: the bucket's or account's default KMS key. */
  readonly kmsKeyId?: string;
}

/** What every block PUT of a volume carries. */
export interface PutClass {
  readonly storageClass: StorageClass;
  readonly sse: Sse | null;
}

export function checkStorageClass(text: string, flag = '--storage-class'): StorageClass {
  const name = text.trim().toUpperCase().replace(/-/g, '_');
  if (RESTORE_CLASSES.includes(name)) {
    throw new S3zError(
      'EUSAGE',
      `${flag} ${text}: objects in ${name} must be restored (hours) before they can be read, and a volume must be readable on demand; use GLACIER_IR (instant retrieval) instead`,
    );
  }
  if (!(STORAGE_CLASSES as readonly string[]).includes(name)) {
    throw new S3zError('EUSAGE', `${flag} ${text}: unknown storage class (choose from ${STORAGE_CLASSES.join(', ')})`);
  }
  return name as StorageClass;
}

export function checkSse(sse: string | undefined, kmsKeyId: string | undefined): Sse | null {
  if (sse === undefined) {
    if (kmsKeyId !== undefined) throw new S3zError('EUSAGE', '--sse-kms-key-id needs --sse aws:kms');
    return null;
  }
  const mode = SSE_MODES.find((m) => m.toLowerCase() === sse.trim().toLowerCase());
  if (mode === undefined) throw new S3zError('EUSAGE', `--sse ${sse}: choose AES256 (keys managed by S3) or aws:kms (keys in AWS KMS)`);
  if (kmsKeyId !== undefined) {
    if (mode !== 'aws:kms') throw new S3zError('EUSAGE', '--sse-kms-key-id needs --sse aws:kms');
    if (kmsKeyId.trim() === '') throw new S3zError('EUSAGE', '--sse-kms-key-id is empty (give a key id, ARN or alias, or leave it out for the default key)');
    return { mode, kmsKeyId: kmsKeyId.trim() };
  }
  return { mode };
}

/** The probe's key: outside blocks/ and leases/, deleted right after; `erase` removes a leftover. */
export const PROBE_NAME = 'probe';

/**
 * Asks the server whether it takes PUTs in this class and SSE, with an empty object
 * deleted again at once (1 PUT + 1 DELETE). For a mount that writes in a class the
 * descriptor's PUT never tried: otherwise the first fsync would be the one to fail.
 */
export async function probePutClass(bucket: S3Bucket, loc: S3Location, put: PutClass): Promise<void> {
  const key = keyUnder(loc, PROBE_NAME);
  await bucket.put(key, Buffer.alloc(0), { storageClass: put.storageClass, sse: put.sse }).catch((err: unknown) => {
    throw refusedClass(err, put, 'nothing was mounted');
  });
  await bucket.delete(key);
}

/** A 400 (or 501) on a PUT that asked for a class or SSE is the server refusing it: one line saying which. */
export function refusedClass(err: unknown, put: PutClass, outcome: string): unknown {
  if (!(err instanceof S3zError) || err.code !== 'ES3' || !/HTTP 400|HTTP 501/.test(err.message)) return err;
  const asked = [put.storageClass !== DEFAULT_STORAGE_CLASS ? `storage class ${put.storageClass}` : '', put.sse ? `SSE ${put.sse.mode}` : ''].filter(Boolean).join(' or ');
  if (asked === '') return err;
  return new S3zError('ES3', `the server refused ${asked} (${/HTTP \d+[^:]*/.exec(err.message)?.[0] ?? 'HTTP 400'}); ${outcome}: pick another, or have the server's admin enable it`, { cause: err });
}
