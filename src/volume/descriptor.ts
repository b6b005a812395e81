// The volume descriptor, `<prefix>/s3zmount.json`: what a volume is (format 1).
// Written once, only if absent; read and validated before anything touches blocks.
// storageClass and sse came later: a descriptor without them reads as STANDARD,
// no SSE. The descriptor is PUT in the volume's own class and SSE, so a server
// that refuses either says so at create, not at the first block write.
import { randomUUID } from 'node:crypto';
import { S3zError } from '../errors.js';
import { checkGeometry } from '../size.js';
import type { S3Bucket } from '../s3/bucket.js';
import { formatS3Url, keyUnder, type S3Location } from '../s3/url.js';
import { md5 } from '../store/checksum.js';
import { KEY_LAYOUT } from './keys.js';
import { DEFAULT_STORAGE_CLASS, SSE_MODES, checkStorageClass, type PutClass, type Sse, type StorageClass } from './storage.js';

export const FORMAT = 1;
export const DESCRIPTOR_NAME = 's3zmount.json';

export interface Descriptor {
  readonly format: 1;
  readonly uuid: string;
  readonly size: number;
  readonly blockSize: number;
  readonly created: string;
  readonly keyLayout: string;
  /** Every block PUT's storage class (absent in older descriptors: STANDARD). */
  readonly storageClass: StorageClass;
  /** Server-side encryption sent on every PUT; null: none asked (the bucket's default applies). */
  readonly sse: Sse | null;
}

export async function createDescriptor(bucket: S3Bucket, loc: S3Location, geometry: { size: number; blockSize: number }, put: PutClass = { storageClass: DEFAULT_STORAGE_CLASS, sse: null }): Promise<Descriptor> {
  checkGeometry(geometry.size, geometry.blockSize);
  const url = formatS3Url(loc);
  const key = keyUnder(loc, DESCRIPTOR_NAME);
  // s3rver ignores If-None-Match, so look first; on AWS the conditional PUT closes the race.
  if ((await bucket.head(key)) !== null) throw new S3zError('EVOLUMEEXISTS', `${url}: a volume already exists there`);
  const desc: Descriptor = {
    format: FORMAT,
    uuid: randomUUID(),
    size: geometry.size,
    blockSize: geometry.blockSize,
    created: new Date().toISOString(),
    keyLayout: KEY_LAYOUT,
    storageClass: put.storageClass,
    sse: put.sse,
  };
  const body = Buffer.from(JSON.stringify(desc, null, 2) + '\n');
  try {
    await bucket.put(key, body, { md5: md5(body), contentType: 'application/json', ifAbsent: true, storageClass: put.storageClass, sse: put.sse });
  } catch (err) {
    if (err instanceof S3zError && err.code === 'EVOLUMEEXISTS') throw new S3zError('EVOLUMEEXISTS', `${url}: a volume already exists there`, { cause: err });
    throw err;
  }
  return desc;
}

export async function readDescriptor(bucket: S3Bucket, loc: S3Location): Promise<Descriptor> {
  const url = formatS3Url(loc);
  const obj = await bucket.get(keyUnder(loc, DESCRIPTOR_NAME));
  if (obj === null) throw new S3zError('ENOVOLUME', `${url}: no volume there (make one with "s3zmount create ${url} --size SIZE")`);
  return parseDescriptor(obj.body, url);
}

export function parseDescriptor(body: Buffer, url: string): Descriptor {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new S3zError('EBADVOLUME', `${url}: ${DESCRIPTOR_NAME} is not JSON`, { cause: err });
  }
  const d = raw as Partial<Record<keyof Descriptor, unknown>>;
  if (typeof raw !== 'object' || raw === null) throw new S3zError('EBADVOLUME', `${url}: ${DESCRIPTOR_NAME} is not an object`);
  if (d.format !== FORMAT) throw new S3zError('EBADVOLUME', `${url}: volume format ${String(d.format)} is not supported (this build reads format ${FORMAT})`);
  if (typeof d.uuid !== 'string' || !/^[0-9a-f-]{36}$/.test(d.uuid)) throw new S3zError('EBADVOLUME', `${url}: the descriptor has no valid uuid`);
  if (typeof d.size !== 'number' || typeof d.blockSize !== 'number') throw new S3zError('EBADVOLUME', `${url}: the descriptor has no size or block size`);
  try {
    checkGeometry(d.size, d.blockSize);
  } catch (err) {
    throw new S3zError('EBADVOLUME', `${url}: the descriptor's geometry is invalid: ${(err as Error).message}`, { cause: err });
  }
  if (d.keyLayout !== KEY_LAYOUT) throw new S3zError('EBADVOLUME', `${url}: block key layout "${String(d.keyLayout)}" is not supported by this build`);
  if (typeof d.created !== 'string') throw new S3zError('EBADVOLUME', `${url}: the descriptor has no creation date`);
  let storageClass: StorageClass = DEFAULT_STORAGE_CLASS;
  if (d.storageClass !== undefined) {
    try {
      storageClass = checkStorageClass(String(d.storageClass), 'storage class');
    } catch (err) {
      throw new S3zError('EBADVOLUME', `${url}: the descriptor's ${(err as Error).message}`, { cause: err });
    }
  }
  return { format: FORMAT, uuid: d.uuid, size: d.size, blockSize: d.blockSize, created: d.created, keyLayout: d.keyLayout, storageClass, sse: parseSse(d.sse, url) };
}

function parseSse(raw: unknown, url: string): Sse | null {
  if (raw === undefined || raw === null) return null;
  const s = raw as { mode?: unknown; kmsKeyId?: unknown };
  if (typeof raw !== 'object' || !(SSE_MODES as readonly unknown[]).includes(s.mode) || (s.kmsKeyId !== undefined && typeof s.kmsKeyId !== 'string')) {
    throw new S3zError('EBADVOLUME', `${url}: the descriptor's sse is not one this build knows (${JSON.stringify(raw)})`);
  }
  return { mode: s.mode as Sse['mode'], ...(typeof s.kmsKeyId === 'string' ? { kmsKeyId: s.kmsKeyId } : {}) };
}
