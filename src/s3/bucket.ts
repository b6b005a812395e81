// One bucket, spoken to through @aws-sdk/client-s3. Owns the HTTP agent (keep-alive,
// bounded sockets), the per-attempt timeout, retries and the request counters.
// Knows nothing of blocks: keys and bytes only. Every method either succeeds,
// answers "absent" (null), or throws an S3zError once retries are spent.
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import {
  S3Client, GetObjectCommand, PutObjectCommand, DeleteObjectCommand, DeleteObjectsCommand,
  HeadObjectCommand, HeadBucketCommand, ListObjectsV2Command, type StorageClass,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Logger } from '../log.js';
import { S3zError } from '../errors.js';
import { withRetry } from './retry.js';
import type { S3Config } from './config.js';

export { DEFAULT_S3_CONFIG, type S3Config } from './config.js';
import { TransientError, isRetryable, toS3zError } from './errors.js';

// The SDK warns on Node 20 at every start; a CLI user must never see it (DESIGN §6).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

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
  #client: S3Client;
  #config: S3Config;
  /** SSE for PUTs that name none: the volume's, once its descriptor is read (a bucket policy may demand it on every PUT). */
  #sse: PutSse | null = null;
  #log: Logger;

  constructor(config: S3Config, bucket: string, log: Logger) {
    this.name = bucket;
    this.endpoint = config.endpoint ?? `s3.${config.region}.amazonaws.com`;
    this.#config = config;
    this.#log = log.child({ layer: 's3', bucket });
    const agentOptions = { keepAlive: true, maxSockets: config.maxSockets, maxFreeSockets: config.maxSockets };
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
        httpAgent: new http.Agent(agentOptions),
        httpsAgent: new https.Agent(agentOptions),
        connectionTimeout: config.connectTimeoutMs,
        requestTimeout: config.requestTimeoutMs,
      }),
    });
  }

  /** Runs one request with a whole-attempt deadline, retrying transient failures. */
  async #send<T>(what: string, counter: keyof S3Stats, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    let corrupt = 0;
    try {
      return await withRetry(
        this.#config.retry,
        async () => {
          this.stats[counter]++;
          const signal = AbortSignal.timeout(this.#config.requestTimeoutMs);
          return await fn(signal);
        },
        (err) => {
          if (err instanceof TransientError && err.code === 'ECORRUPT') corrupt++;
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
      this.#client.send(new HeadBucketCommand({ Bucket: this.name }), { abortSignal }).then(() => undefined),
    ).catch((err: unknown) => {
      // HEAD has no body, so a missing bucket comes back as a bare 404.
      if (err instanceof S3zError && err.code === 'ES3' && /HTTP 404/.test(err.message)) {
        throw new S3zError('ENOBUCKET', `s3://${this.name}: the bucket does not exist`, { cause: err });
      }
      throw err;
    });
  }

  /**
   * `verify` runs inside each attempt (it may be async, e.g. a hash off the main
   * thread); if it throws a retryable error, the body is dropped and fetched again.
   */
  async get(key: string, verify?: (obj: S3Object) => void | Promise<void>): Promise<S3Object | null> {
    return this.#send(`GET s3://${this.name}/${key}`, 'get', async (abortSignal) => {
      let res;
      try {
        res = await this.#client.send(new GetObjectCommand({ Bucket: this.name, Key: key }), { abortSignal });
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
      const body = await readBody(res.Body, res.ContentLength);
      this.stats.bytesIn += body.length;
      const obj: S3Object = { body, metadata: res.Metadata ?? {}, etag: res.ETag };
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
   * nothing but CPU (DESIGN §2). Without either, SigV4 hashes the body on the main thread.
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
    return this.#send(`PUT s3://${this.name}/${key}`, 'put', async (abortSignal) => {
      const command = new PutObjectCommand({
        Bucket: this.name, Key: key, Body: body, ContentLength: body.length,
        ...(opts.md5 !== undefined ? { ContentMD5: opts.md5 } : {}),
        ContentType: opts.contentType ?? 'application/octet-stream',
        ...(opts.metadata ? { Metadata: opts.metadata } : {}),
        ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}),
        ...(opts.storageClass !== undefined && opts.storageClass !== 'STANDARD' ? { StorageClass: opts.storageClass as StorageClass } : {}),
        ...(sse ? { ServerSideEncryption: sse.mode, ...(sse.kmsKeyId !== undefined ? { SSEKMSKeyId: sse.kmsKeyId } : {}) } : {}),
      });
      const payloadHash = opts.sha256Hex;
      if (payloadHash !== undefined) {
        // The signer takes a present x-amz-content-sha256 as the payload's hash.
        command.middlewareStack.add(
          (next) => (args) => {
            (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = payloadHash;
            return next(args);
          },
          { step: 'build', name: 's3zPayloadHash' },
        );
      }
      const res = await this.#client.send(command, { abortSignal });
      this.stats.bytesOut += body.length;
      return res.ETag;
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
    this.#client.destroy();
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || (e.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket');
}

/** Reads a response body into one buffer of the announced length; a short body is transient. */
async function readBody(body: unknown, length: number | undefined): Promise<Buffer> {
  if (!(body instanceof Readable)) throw new TransientError('response has no body');
  if (length === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  try {
    for await (const chunk of body) {
      const c = chunk as Buffer;
      if (at + c.length > length) throw new TransientError(`body longer than its Content-Length ${length}`);
      c.copy(out, at);
      at += c.length;
    }
  } catch (err) {
    if (err instanceof TransientError) throw err;
    throw new TransientError(`body cut after ${at} of ${length} bytes`, { cause: err });
  }
  if (at !== length) throw new TransientError(`body cut after ${at} of ${length} bytes`);
  return out;
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string };
  return `${e.name ?? 'Error'}: ${e.message ?? String(err)}`;
}
