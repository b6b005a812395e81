// One bucket. Object GET and PUT (the block path) go through the lean signed
// requests of block-http.ts; everything else through @aws-sdk/client-s3, whose
// resolved config (credentials provider, region, endpoint rules) both share. Owns the
// HTTP agent (keep-alive, bounded sockets, shared by both paths), the per-attempt
// timeout, retries and the request counters. Knows nothing of blocks: keys and bytes
// only. Every method either succeeds, answers "absent" (null), or throws an S3zError
// once retries are spent.
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type * as ClientS3 from '@aws-sdk/client-s3';
import type * as SmithyHttp from '@smithy/node-http-handler';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import { withRetry } from './retry.js';
import type { S3Config } from './config.js';

export { DEFAULT_S3_CONFIG, type S3Config } from './config.js';
import { TransientError, hasAnswer, isRetryable, isUnreachable, toS3zError } from './errors.js';
import { BlockHttp } from './block-http.js';

// The SDK warns on Node 20 at every start; a CLI user must never see it (DESIGN §6).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// The SDK is CommonJS. Through `import`, Node first scans its bundles for their named
// exports (cjs-module-lexer): 190 ms to load it that way against 115 ms by require(),
// at the start of every command (docs/PERFORMANCE.md, session 13).
const require = createRequire(import.meta.url);
const { S3Client, DeleteObjectCommand, DeleteObjectsCommand, HeadObjectCommand, HeadBucketCommand, ListObjectsV2Command } =
  require('@aws-sdk/client-s3') as typeof ClientS3;
const { NodeHttpHandler } = require('@smithy/node-http-handler') as typeof SmithyHttp;

export interface S3Stats {
  get: number; put: number; delete: number; list: number; head: number;
  bytesIn: number; bytesOut: number; retries: number;
}

export interface PutSse {
  readonly mode: 'AES256' | 'aws:kms';
  readonly kmsKeyId?: string;
}

export interface S3Object {
  readonly body: Buffer;
  readonly metadata: Readonly<Record<string, string>>;
  readonly etag: string | undefined;
}

export interface S3Listed {
  readonly key: string;
  readonly size: number;
  readonly etag: string | undefined;
}

export class S3Bucket {
  readonly name: string;
  readonly endpoint: string;
  readonly stats: S3Stats = { get: 0, put: 0, delete: 0, list: 0, head: 0, bytesIn: 0, bytesOut: 0, retries: 0 };
  #client: ClientS3.S3Client;
  #lean: BlockHttp | null = null;
  #agents: { http: http.Agent; https: https.Agent };
  #config: S3Config;
  /** SSE for PUTs that name none: the volume's, once its descriptor is read (a bucket policy may demand it on every PUT). */
  #sse: PutSse | null = null;
  /** Whether the endpoint ever answered (an HTTP status, even an error's): from then on a refusal is an outage. */
  #answered = false;
  #log: Logger;

  constructor(config: S3Config, bucket: string, log: Logger) {
    this.name = bucket;
    this.endpoint = config.endpoint ?? `s3.${config.region}.amazonaws.com`;
    this.#config = config;
    this.#log = log.child({ layer: 's3', bucket });
    const agentOptions = { keepAlive: true, maxSockets: config.maxSockets, maxFreeSockets: config.maxSockets };
    const httpAgent = new http.Agent(agentOptions);
    const httpsAgent = new https.Agent(agentOptions);
    this.#agents = { http: httpAgent, https: httpsAgent };
    this.#client = new S3Client({
      region: config.region,
      ...(config.endpoint ? { endpoint: config.endpoint, forcePathStyle: true } : {}),
      // We retry ourselves, with our own classification (checksums, short bodies).
      maxAttempts: 1,
      // s3rver stores aws-chunked framing as content. Block PUTs are protected by
      // their signed payload hash instead; small JSON objects add Content-MD5.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        httpAgent,
        httpsAgent,
        connectionTimeout: config.connectTimeoutMs,
        requestTimeout: config.requestTimeoutMs,
      }),
    });
  }

  /**
   * The lean GET/PUT path, made on first use so that what the SDK's endpoint rules
   * refuse (a malformed region) fails a request, as it did inside the SDK, not the constructor.
   */
  #leanPath(): BlockHttp {
    if (this.#lean !== null) return this.#lean;
    const config = this.#config;
    // The SDK's own rules give the bucket's URL (virtual-host on AWS where the name
    // allows, path-style with a custom endpoint) and the signing region.
    const resolved = this.#client.config.endpointProvider({
      Bucket: this.name, Region: config.region, UseFIPS: false, UseDualStack: false, Accelerate: false,
      ForcePathStyle: config.endpoint !== undefined, ...(config.endpoint ? { Endpoint: config.endpoint } : {}),
    });
    const scheme = (resolved.properties?.authSchemes as { signingRegion?: string }[] | undefined)?.[0];
    const bucketUrl = new URL(resolved.url.href);
    const credentials = this.#client.config.credentials;
    this.#lean = new BlockHttp({
      bucketUrl,
      signingRegion: scheme?.signingRegion ?? config.region,
      credentials: () => credentials(),
      agent: bucketUrl.protocol === 'https:' ? this.#agents.https : this.#agents.http,
      connectTimeoutMs: config.connectTimeoutMs,
    });
    return this.#lean;
  }

  /** Runs one request with a whole-attempt deadline, retrying transient failures. */
  async #send<T>(what: string, counter: keyof S3Stats, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const policy = this.#config.retry;
    const started = performance.now();
    let corrupt = 0;
    try {
      return await withRetry(
        policy,
        async () => {
          this.stats[counter]++;
          const signal = AbortSignal.timeout(this.#config.requestTimeoutMs);
          try {
            const result = await fn(signal);
            this.#answered = true;
            return result;
          } catch (err) {
            if (hasAnswer(err)) this.#answered = true;
            throw err;
          }
        },
        (err) => {
          if (err instanceof TransientError && err.code === 'ECORRUPT') corrupt++;
          if (!this.#answered && isUnreachable(err) && performance.now() - started >= (policy.firstContactMs ?? policy.maxTotalMs)) return false;
          return isRetryable(err, corrupt);
        },
        (err, n) => {
          this.stats.retries++;
          this.#log.debug({ what, attempt: n, err: describe(err) }, 'retrying');
        },
      );
    } catch (err) {
      throw toS3zError(err, what, this.name, this.endpoint);
    }
  }

  /** From now on, PUTs that do not say otherwise carry this SSE (the lease's too). */
  useSse(sse: PutSse | null): void {
    this.#sse = sse;
  }

  /** Checks that the bucket exists and the credentials are accepted. */
  async check(): Promise<void> {
    await this.#send(`s3://${this.name}`, 'head', (abortSignal) =>
      this.#client.send(new HeadBucketCommand({ Bucket: this.name }), { abortSignal }).then(
        () => undefined,
        (err: unknown) => {
          // HEAD has no body, so a missing bucket comes back as a bare 404.
          if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) {
            throw new S3zError('ENOBUCKET', `s3://${this.name}: the bucket does not exist`, { cause: err });
          }
          throw err;
        },
      ),
    );
  }

  /**
   * `verify` runs inside each attempt (it may be async, e.g. a hash off the main
   * thread); if it throws a retryable error, the body is dropped and fetched again.
   * A body of exactly `into`'s length is read into `into` (the caller's reused buffer);
   * any other length gets a buffer of its own.
   */
  async get(key: string, verify?: (obj: S3Object) => void | Promise<void>, into?: Buffer): Promise<S3Object | null> {
    return this.#send(`GET s3://${this.name}/${key}`, 'get', async (signal) => {
      const obj = await this.#leanPath().get(key, signal, into);
      if (obj === null) return null;
      this.stats.bytesIn += obj.body.length;
      // Verification inside the attempt: a bad body is retried like a dropped one.
      await verify?.(obj);
      return obj;
    });
  }

  /** `storageClass` is what the server says; S3 leaves it out for STANDARD. */
  async head(key: string): Promise<{ size: number; metadata: Record<string, string>; etag: string | undefined; storageClass: string } | null> {
    return this.#send(`HEAD s3://${this.name}/${key}`, 'head', async (abortSignal) => {
      try {
        const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.name, Key: key }), { abortSignal });
        return { size: res.ContentLength ?? 0, metadata: res.Metadata ?? {}, etag: res.ETag, storageClass: res.StorageClass ?? 'STANDARD' };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    });
  }

  /**
   * `ifAbsent` asks the server to refuse an overwrite (s3rver ignores it; AWS honours it).
   * `sha256Hex`, the body's SHA-256 when the caller has it, spares SigV4 hashing the body again,
   * and is what makes the server refuse a damaged body: with it, `md5` (Content-MD5) adds
   * nothing but CPU (DESIGN §2). Without it, the body is hashed on the main thread: small objects only.
   */
  async put(
    key: string,
    body: Buffer,
    opts: {
      md5?: string; sha256Hex?: string; metadata?: Record<string, string>; contentType?: string; ifAbsent?: boolean;
      /** Absent: the server's default (STANDARD); sent only when not STANDARD. */
      storageClass?: string;
      /** Absent: the one set by useSse(); null: none. */
      sse?: PutSse | null;
    },
  ): Promise<string | undefined> {
    const sse = opts.sse === undefined ? this.#sse : opts.sse;
    const storageClass = opts.storageClass !== undefined && opts.storageClass !== 'STANDARD' ? opts.storageClass : undefined;
    const put = { ...opts, contentType: opts.contentType ?? 'application/octet-stream', storageClass, sse };
    return this.#send(`PUT s3://${this.name}/${key}`, 'put', async (signal) => {
      const etag = await this.#leanPath().put(key, body, put, signal);
      this.stats.bytesOut += body.length;
      return etag;
    });
  }

  async delete(key: string): Promise<void> {
    await this.#send(`DELETE s3://${this.name}/${key}`, 'delete', async (abortSignal) => {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }), { abortSignal });
    });
  }

  /** Deletes up to 1000 keys in one request; throws if any could not be deleted. */
  async deleteMany(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.#send(`DELETE ${keys.length} objects in s3://${this.name}`, 'delete', async (abortSignal) => {
      const res = await this.#client.send(
        new DeleteObjectsCommand({ Bucket: this.name, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
        { abortSignal },
      );
      const failed = res.Errors ?? [];
      if (failed.length > 0) throw new TransientError(`${failed.length} objects not deleted: ${failed[0]?.Code ?? ''} ${failed[0]?.Key ?? ''}`);
    });
  }

  /** Every key under `prefix`, in key order, one page (≤1000) at a time. */
  async *list(prefix: string, startAfter?: string): AsyncGenerator<S3Listed[]> {
    let token: string | undefined;
    do {
      const page = await this.#send(`LIST s3://${this.name}/${prefix}`, 'list', (abortSignal) =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.name, Prefix: prefix,
            ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
          }),
          { abortSignal },
        ),
      );
      yield (page.Contents ?? []).map((o) => ({ key: o.Key ?? '', size: o.Size ?? 0, etag: o.ETag }));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  destroy(): void {
    this.#lean?.close();
    this.#client.destroy();
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || (e.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket');
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string };
  return `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
}
