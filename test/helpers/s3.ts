// An S3 endpoint for one test file. By default a fresh s3rver (through the
// product's own `local-s3` command) on a free port with its own data directory,
// stopped by pid afterwards. With S3Z_TEST_ENDPOINT and S3Z_TEST_BUCKET set, the
// tests use that server instead (credentials from the usual AWS variables), each
// under a fresh random prefix; S3Z_TEST_BACKEND says what it is (`rgw` when
// scripts/test.js started a Ceph RGW, `external` otherwise), so a test can tell
// which semantics it runs on. Credentials are never literals in tests: s3rver's
// are the product's LOCAL_CREDENTIALS (the only pair it knows), RGW's are random.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { S3Bucket, DEFAULT_S3_CONFIG, type S3Config } from '../../dist/s3/bucket.js';
import { silentLogger } from '../../dist/log.js';
import { LOCAL_CREDENTIALS } from '../../dist/s3/local-server.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

/** What serves the tests' S3: s3rver checks no signature and ignores conditions; RGW enforces both. */
export type TestBackend = 's3rver' | 'rgw' | 'external';

/** The backend startS3() will give this process. */
export function testBackend(): TestBackend {
  if (!process.env.S3Z_TEST_ENDPOINT) return 's3rver';
  return process.env.S3Z_TEST_BACKEND === 'rgw' ? 'rgw' : 'external';
}

export interface TestS3 {
  readonly backend: TestBackend;
  readonly endpoint: string;
  readonly bucket: string;
  /** Environment for the CLI and the SDK: endpoint and credentials. */
  readonly env: Record<string, string>;
  /** A fresh s3:// URL for a volume no other test uses. */
  url(name?: string): string;
  /** The data directory of s3rver (undefined otherwise); tests should tamper through the S3 API instead. */
  readonly dataDir: string | undefined;
  stop(): Promise<void>;
}

export async function startS3(): Promise<TestS3> {
  const external = process.env.S3Z_TEST_ENDPOINT;
  const run = randomBytes(4).toString('hex');
  if (external) {
    const bucket = process.env.S3Z_TEST_BUCKET;
    if (!bucket) throw new Error('S3Z_TEST_ENDPOINT is set but S3Z_TEST_BUCKET is not');
    const env: Record<string, string> = { AWS_ENDPOINT_URL_S3: external };
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE']) {
      const v = process.env[k];
      if (v) env[k] = v;
    }
    let n = 0;
    return { backend: testBackend(), endpoint: external, bucket, env, dataDir: undefined, url: (name = 'v') => `s3://${bucket}/s3z-test-${run}/${name}-${n++}`, stop: async () => {} };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 's3z-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', CLI, 'local-s3', '--dir', dataDir, '--port', '0', '--bucket', 'test'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const endpoint = await readEndpoint(child).catch(async (err: unknown) => {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  const env = {
    AWS_ENDPOINT_URL_S3: endpoint,
    // s3rver knows one key pair (it checks the key id and, by default, the signature):
    // the product's own constant, not a literal here.
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_REGION: 'us-east-1',
  };
  let n = 0;
  return {
    backend: 's3rver',
    endpoint,
    bucket: 'test',
    env,
    dataDir,
    url: (name = 'v') => `s3://test/${run}/${name}-${n++}`,
    stop: async () => {
      await stopChild(child);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function readEndpoint(child: ChildProcess): Promise<string> {
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`local-s3 did not start in 20 s: ${err}`));
    }, 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving (http:\/\/[0-9.:]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`local-s3 exited with ${code}: ${err}`));
    });
  });
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Puts the server's credentials where the SDK's default chain finds them (this process only). */
export function useCredentials(s3: TestS3): void {
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION'] as const) {
    const v = s3.env[k];
    if (v !== undefined) process.env[k] = v;
  }
}

/** A product S3Bucket client for the test server's bucket; the caller destroys it. */
export function testBucket(s3: TestS3, config: Partial<S3Config> = {}): S3Bucket {
  useCredentials(s3);
  return new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: s3.endpoint, ...config }, s3.bucket, silentLogger);
}
