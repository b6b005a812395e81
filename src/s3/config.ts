// The S3 settings every command shares (endpoint, region, sockets, timeouts,
// retries). Apart from the bucket so that commands that never speak to S3 do not
// load the SDK to read them.
import { DEFAULT_RETRY, type RetryPolicy } from './retry.js';

export interface S3Config {
  /** Custom endpoint (s3rver, MinIO...): path-style addressing. Unset: AWS. */
  readonly endpoint?: string | undefined;
  readonly region: string;
  readonly maxSockets: number;
  readonly connectTimeoutMs: number;
  /** Whole attempt, body included. */
  readonly requestTimeoutMs: number;
  readonly retry: RetryPolicy;
}

export const DEFAULT_S3_CONFIG: S3Config = {
  region: 'us-east-1',
  // A mount's 32 uploads and 32 read-ahead GETs leave room for hydration's 16, the
  // reads ZFS waits for, and the lease (cache.ts, prefetch.ts, hydrate.ts).
  maxSockets: 96,
  connectTimeoutMs: 3000,
  requestTimeoutMs: 30_000,
  retry: DEFAULT_RETRY,
};
