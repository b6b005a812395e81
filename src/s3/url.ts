// s3://bucket/prefix URLs. The prefix names the volume; it is kept without
// leading or trailing slashes, and "" means the bucket's root.
import { S3zError } from '../errors.js';

export interface S3Location {
  readonly bucket: string;
  readonly prefix: string;
}

// S3's rules for new buckets, which every S3-compatible server here accepts.
const BUCKET = /^(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]$/;

/** Whether `name` is a bucket name S3 accepts for a new bucket. */
export function isBucketName(name: string): boolean {
  return BUCKET.test(name) && !name.includes('..') && !/^\d+\.\d+\.\d+\.\d+$/.test(name);
}

export function parseS3Url(text: string): S3Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(text);
  if (!m) throw new S3zError('EBADURL', `"${text}" is not an s3:// URL (expected s3://BUCKET/PREFIX)`);
  const bucket = m[1] ?? '';
  if (!isBucketName(bucket)) {
    throw new S3zError('EBADURL', `"${text}": "${bucket}" is not a valid bucket name`);
  }
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((part, i, all) => part === '' && all.length > 1) || /[\x00-\x1f\x7f]/.test(prefix)) {
    throw new S3zError('EBADURL', `"${text}": the prefix has an empty path segment or a control character`);
  }
  if (prefix.length > 900) throw new S3zError('EBADURL', `"${text}": the prefix is too long`);
  return { bucket, prefix };
}

export function formatS3Url(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.prefix}`;
}

/** The key of `name` under the volume's prefix. */
export function keyUnder(loc: S3Location, name: string): string {
  return loc.prefix === '' ? name : `${loc.prefix}/${name}`;
}
