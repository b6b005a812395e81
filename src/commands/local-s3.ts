// `local-s3`: runs the embedded S3-compatible server in the foreground until
// SIGINT/SIGTERM. Prints its endpoint and the environment a shell needs to use it.
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { S3zError } from '../errors.js';
import { LOCAL_CREDENTIALS, hasLegacyProvider, startLocalS3 } from '../s3/local-server.js';
import { isBucketName } from '../s3/url.js';

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
  const bad = opts.bucket.find((name) => !isBucketName(name));
  if (bad !== undefined) throw new S3zError('EUSAGE', `--bucket "${bad}" is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)`);
  const dir = path.resolve(opts.dir ?? defaultLocalS3Dir());
  await mkdir(dir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    const why = err.code === 'EEXIST' || err.code === 'ENOTDIR' ? 'it or a folder on its path is a file' : (err.code ?? err.message);
    throw new S3zError('EUSAGE', `--dir ${dir} cannot be used as a data folder: ${why}`, { cause: err });
  });
  if (!hasLegacyProvider()) {
    // Re-run this same command in a child with the OpenSSL option s3rver needs. The IPC
    // channel is how the child learns that this process is gone, even by SIGKILL.
    const child = spawn(process.execPath, ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1)], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
    const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
    process.exitCode = code;
    return;
  }
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
    // A Ctrl-C reaches both this child and its parent, which passes it on: the second
    // signal must not cut the close short.
    process.on('SIGINT', () => resolve());
    process.on('SIGTERM', () => resolve());
    // Run by the re-executing parent: its end (kill -9 too) closes the channel.
    process.on('disconnect', () => resolve());
  });
  await server.close();
  if (process.connected) process.disconnect();
}
