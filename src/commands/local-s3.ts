// `local-s3`: runs the embedded S3-compatible server in the foreground until
// SIGINT/SIGTERM. Prints its endpoint and the environment a shell needs to use it.
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import path from 'node:path';
import { S3zError } from '../errors.js';
import { LOCAL_CREDENTIALS, hasLegacyProvider, startLocalS3 } from '../s3/local-server.js';

export interface LocalS3CommandOptions {
  dir?: string;
  port: string;
  address: string;
  bucket: string[];
}

export function defaultLocalS3Dir(): string {
  const base = process.env.XDG_DATA_HOME || path.join(homedir(), '.local', 'share');
  return path.join(base, 's3zmount', 'local-s3');
}

export async function localS3Command(opts: LocalS3CommandOptions): Promise<void> {
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new S3zError('EUSAGE', `--port ${opts.port} is not a port number`);
  if (!hasLegacyProvider()) {
    // Re-run this same command in a child with the OpenSSL option s3rver needs.
    const child = spawn(process.execPath, ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
    const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
    process.exitCode = code;
    return;
  }
  const dir = path.resolve(opts.dir ?? defaultLocalS3Dir());
  const server = await startLocalS3({ dir, port, address: opts.address, buckets: opts.bucket }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') throw new S3zError('EUSAGE', `port ${port} on ${opts.address} is already in use (pick another with --port, or 0 for any)`, { cause: err });
    if (err.code === 'EACCES') throw new S3zError('EUSAGE', `port ${port} on ${opts.address}: not allowed (ports below 1024 need root; pick another with --port)`, { cause: err });
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') throw new S3zError('EUSAGE', `--address ${opts.address} is not an address of this machine`, { cause: err });
    throw err;
  });
  process.stdout.write(
    `s3zmount local-s3: serving ${server.endpoint} from ${dir}, buckets: ${opts.bucket.join(', ')}\n` +
      `export AWS_ENDPOINT_URL_S3=${server.endpoint} AWS_ACCESS_KEY_ID=${LOCAL_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${LOCAL_CREDENTIALS.secretAccessKey}\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}
