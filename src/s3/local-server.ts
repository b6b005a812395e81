// The embedded S3-compatible server (`local-s3`): s3rver on 127.0.0.1 with a data
// directory, for trying s3zmount on one machine and for the tests.
// s3rver encrypts continuation tokens with DES, which Node 20's OpenSSL 3 only
// offers with --openssl-legacy-provider: the CLI re-executes itself with it.
import { mkdir } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export interface LocalS3Options {
  readonly dir: string;
  readonly port: number;
  readonly address: string;
  readonly buckets: readonly string[];
}

export interface LocalS3 {
  readonly endpoint: string;
  close(): Promise<void>;
}

/** Access key and secret that s3rver accepts (it checks the key, not the signature). */
export const LOCAL_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export function hasLegacyProvider(): boolean {
  return process.execArgv.includes('--openssl-legacy-provider') || (process.env.NODE_OPTIONS ?? '').includes('--openssl-legacy-provider');
}

export async function startLocalS3(opts: LocalS3Options): Promise<LocalS3> {
  await mkdir(opts.dir, { recursive: true });
  await tryListen(opts.address, opts.port);
  // s3rver is CommonJS with no types.
  const S3rver = require('s3rver') as new (o: Record<string, unknown>) => {
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  };
  const server = new S3rver({
    address: opts.address,
    port: opts.port,
    directory: opts.dir,
    silent: true,
    // Path-style only: bucket names never come from the Host header.
    vhostBuckets: false,
    configureBuckets: opts.buckets.map((name) => ({ name })),
  });
  const addr = await server.run();
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return { endpoint: `http://${host}:${addr.port}`, close: () => server.close() };
}

/**
 * Listens on the address and port once and lets go. s3rver's run() never rejects on a
 * listen error (EADDRINUSE arrives as an 'error' event nobody handles, which ends the
 * process with a stack trace), so the errors a user can cause are met here first, as
 * rejections the command turns into one line.
 */
function tryListen(address: string, port: number): Promise<void> {
  // Port 0 too: it still tells whether the address is one of this machine's.
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ host: address, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
