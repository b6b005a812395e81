// A volume as the commands see it: where it is, its bucket client, its descriptor
// and its key layout. Opening one reads and validates the descriptor.
import type { Logger } from '../log.js';
import { S3Bucket, type S3Config } from '../s3/bucket.js';
import { formatS3Url, parseS3Url, type S3Location } from '../s3/url.js';
import { readDescriptor, type Descriptor } from './descriptor.js';
import { BlockKeys } from './keys.js';

export interface VolumeRef {
  readonly loc: S3Location;
  readonly url: string;
  readonly bucket: S3Bucket;
}

export interface Volume extends VolumeRef {
  readonly descriptor: Descriptor;
  readonly keys: BlockKeys;
}

/** Parses the URL and makes the bucket client; no request yet. Caller destroys `bucket`. */
export function volumeRef(s3: S3Config, url: string, log: Logger): VolumeRef {
  const loc = parseS3Url(url);
  return { loc, url: formatS3Url(loc), bucket: new S3Bucket(s3, loc.bucket, log) };
}

export async function openVolume(ref: VolumeRef): Promise<Volume> {
  const descriptor = await readDescriptor(ref.bucket, ref.loc);
  // Every later PUT of the volume (blocks, lease) then carries its SSE.
  ref.bucket.useSse(descriptor.sse);
  return { ...ref, descriptor, keys: new BlockKeys(ref.loc) };
}
