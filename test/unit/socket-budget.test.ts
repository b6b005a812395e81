// A mount's background requests (uploads, read-ahead, hydration) share one keep-alive
// socket pool with the reads ZFS waits for and the lease's renewals (over https, where
// block requests go through the agent). If the background could take every socket, a
// read would queue behind uploads and a renewal could miss its deadline: raising one of
// these defaults without the pool must fail here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_S3_CONFIG } from '../../dist/s3/config.js';
import { DEFAULT_CACHE_CONFIG } from '../../dist/store/cache.js';
import { DEFAULT_PREFETCH_CONFIG } from '../../dist/store/prefetch.js';
import { HYDRATE_CONCURRENCY } from '../../dist/mount/hydrate.js';

/** Sockets left for foreground reads (ZFS keeps a few in flight) and the lease. */
const FOREGROUND = 16;

test("the socket pool holds every background request of a mount and still has room for the reads ZFS waits for", () => {
  const background = DEFAULT_CACHE_CONFIG.uploadConcurrency + DEFAULT_PREFETCH_CONFIG.concurrency + HYDRATE_CONCURRENCY;
  assert.ok(
    DEFAULT_S3_CONFIG.maxSockets >= background + FOREGROUND,
    `maxSockets ${DEFAULT_S3_CONFIG.maxSockets} < ${background} background requests + ${FOREGROUND} for foreground reads and the lease`,
  );
});
