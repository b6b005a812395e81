// Where and how a volume's block objects are kept in S3: storage class and
// server-side encryption (SSE), as recorded in the descriptor and sent on PUTs.
// Invariant: a volume is readable on demand, so a class whose objects need a
// restore before a GET (GLACIER, DEEP_ARCHIVE) is never accepted, here or in a
// descriptor; every refusal is an EUSAGE line naming the flag.
import { S3zError } from '../errors.js';

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
