// Object GET and PUT straight on node:http(s), SigV4-signed (signed-request.ts):
// the block path without the SDK's per-request middleware, response parsing and
// stream wrappers, whose cost at 0 ms latency is paid on the one main thread
// (docs/PERFORMANCE.md). One attempt per call: S3Bucket owns retries, the attempt's
// deadline (the AbortSignal) and the counters; the SDK keeps everything else. Over plain
// http, a GET with a buffer to land in and a PUT without a condition go on raw-http.ts's
// bare sockets first.
// Invariants: a GET body is exactly its Content-Length, read into one buffer, or the
// attempt throws a TransientError; an error answer becomes an S3ResponseError named
// by its XML Code, which errors.ts maps as it maps the SDK's; a socket goes back to
// the keep-alive agent only once its response was read to the end.
import http from 'node:http';
import https from 'node:https';
import type { S3Object, PutSse } from './bucket.js';
import { ConnectTimeoutError, S3ResponseError, TransientError } from './errors.js';
import { SigV4Signer, encodePath, sha256Hex, EMPTY_SHA256, type SigningCredentials } from './signed-request.js';
import { RawHttpPool, RawUnsupported } from './raw-http.js';

export interface BlockHttpConfig {
  /** The bucket's URL, from the SDK's endpoint rules: path- or virtual-host style. */
  readonly bucketUrl: URL;
  readonly signingRegion: string;
  /** The SDK client's provider: it caches and refreshes (env, profiles, roles). */
  readonly credentials: () => Promise<SigningCredentials>;
  /** Keep-alive agent for bucketUrl's protocol, shared with the SDK's handler. */
  readonly agent: http.Agent;
  readonly connectTimeoutMs: number;
}

export interface LeanPut {
  readonly md5?: string | undefined;
  /** Hex SHA-256 of the body when the caller has it; otherwise hashed here (small bodies only). */
  readonly sha256Hex?: string | undefined;
  readonly metadata?: Readonly<Record<string, string>> | undefined;
  readonly contentType: string;
  readonly ifAbsent?: boolean | undefined;
  /** Sent as given; the caller leaves STANDARD out. */
  readonly storageClass?: string | undefined;
  readonly sse: PutSse | null;
}

/** Error bodies are small XML; anything longer is cut (the Code comes first). */
const MAX_ERROR_BODY = 64 * 1024;
/** The SDK's threshold for correcting its clock from the server's Date. */
const SKEW_MS = 5 * 60_000;

export class BlockHttp {
  #url: URL;
  #host: string;
  #basePath: string;
  #request: typeof http.request;
  #agent: http.Agent;
  #signer: SigV4Signer;
  #credentials: () => Promise<SigningCredentials>;
  #connectTimeoutMs: number;
  /** Server time minus ours, learnt from a skewed answer's Date (as the SDK does). */
  #clockOffsetMs = 0;
  /** Block GETs and PUTs over plain http (raw-http.ts); undefined over https. */
  #raw: RawHttpPool | undefined;

  constructor(config: BlockHttpConfig) {
    this.#url = config.bucketUrl;
    this.#host = config.bucketUrl.host;
    this.#basePath = config.bucketUrl.pathname.replace(/\/+$/, '');
    this.#request = config.bucketUrl.protocol === 'https:' ? https.request : http.request;
    this.#agent = config.agent;
    this.#signer = new SigV4Signer(config.signingRegion);
    this.#credentials = config.credentials;
    this.#connectTimeoutMs = config.connectTimeoutMs;
    this.#raw = config.bucketUrl.protocol === 'http:' ? new RawHttpPool(config.bucketUrl, config.connectTimeoutMs) : undefined;
  }

  /** Closes the sockets this path keeps itself (the agent's are its owner's). */
  close(): void {
    this.#raw?.close();
  }

  /** null: no such key (a missing bucket is an error, not null). A body of `into`'s length lands in `into`. */
  async get(key: string, signal: AbortSignal, into?: Buffer): Promise<S3Object | null> {
    if (into !== undefined && this.#raw !== undefined) {
      try {
        return await this.#rawGet(this.#raw, key, signal, into);
      } catch (err) {
        if (!(err instanceof RawUnsupported)) throw err;
      }
    }
    const { res } = await this.#send('GET', key, {}, null, EMPTY_SHA256, signal);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) return this.#missingOrThrow(status, res.headers, await readSmall(res).catch(() => ''));
    const body = await readBody(res, signal, into);
    return { body, metadata: metadataOf(res.headers), etag: res.headers.etag };
  }

  async #rawGet(raw: RawHttpPool, key: string, signal: AbortSignal, into: Buffer): Promise<S3Object | null> {
    const { path, signed } = await this.#sign('GET', key, {}, EMPTY_SHA256, signal);
    const { status, headers, body } = await raw.get(path, signed, into, signal);
    if (status < 200 || status >= 300) return this.#missingOrThrow(status, headers, body.toString('utf8'));
    // A new Buffer object per attempt over `into`, as readBody makes: a digest memoized
    // for an earlier attempt's bytes (checksum.ts keys its memo by object) is never taken.
    const out = body === into ? Buffer.from(into.buffer, into.byteOffset, into.length) : body;
    return { body: out, metadata: metadataOf(headers), etag: headers.etag };
  }

  /** Returns the ETag. */
  async put(key: string, body: Buffer, opts: LeanPut, signal: AbortSignal): Promise<string | undefined> {
    const headers: Record<string, string> = {
      'content-type': opts.contentType,
      'content-length': String(body.length),
    };
    if (opts.md5 !== undefined) headers['content-md5'] = opts.md5;
    for (const [k, v] of Object.entries(opts.metadata ?? {})) headers[`x-amz-meta-${k.toLowerCase()}`] = v;
    if (opts.ifAbsent) headers['if-none-match'] = '*';
    if (opts.storageClass !== undefined) headers['x-amz-storage-class'] = opts.storageClass;
    if (opts.sse) {
      headers['x-amz-server-side-encryption'] = opts.sse.mode;
      if (opts.sse.kmsKeyId !== undefined) headers['x-amz-server-side-encryption-aws-kms-key-id'] = opts.sse.kmsKeyId;
    }
    // Without a known hash, hash here: only small objects (descriptor, lease) come without one.
    const payloadHash = opts.sha256Hex ?? sha256Hex(body);
    // Bare sockets may send a PUT twice (raw-http.ts): never one with a condition.
    if (this.#raw !== undefined && !opts.ifAbsent) {
      try {
        return await this.#rawPut(this.#raw, key, headers, body, payloadHash, signal);
      } catch (err) {
        if (!(err instanceof RawUnsupported)) throw err;
      }
    }
    const { req, res } = await this.#send('PUT', key, headers, body, payloadHash, signal);
    const status = res.statusCode ?? 0;
    const failed = status < 200 || status >= 300 ? this.#errorFrom(status, res.headers, await readSmall(res).catch(() => '')) : undefined;
    // The caller may reuse `body` once this settles (the cache's upload buffers): a server
    // that answered before taking the whole body must not go on being sent it.
    if (!req.writableFinished) req.destroy();
    if (failed !== undefined) throw failed;
    // An empty body, read so the socket goes back to the agent.
    res.resume();
    return res.headers.etag;
  }

  async #rawPut(raw: RawHttpPool, key: string, headers: Record<string, string>, body: Buffer, payloadHash: string, signal: AbortSignal): Promise<string | undefined> {
    const { path, signed } = await this.#sign('PUT', key, headers, payloadHash, signal);
    const res = await raw.put(path, signed, body, signal);
    if (res.status < 200 || res.status >= 300) throw this.#errorFrom(res.status, res.headers, res.body.toString('utf8'));
    return res.headers.etag;
  }

  async #send(
    method: string,
    key: string,
    headers: Record<string, string>,
    body: Buffer | null,
    payloadHash: string,
    signal: AbortSignal,
  ): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
    const { path, signed } = await this.#sign(method, key, headers, payloadHash, signal);
    return new Promise((resolve, reject) => {
      const req = this.#request(
        {
          protocol: this.#url.protocol,
          hostname: this.#url.hostname.replace(/^\[(.*)\]$/, '$1'),
          port: this.#url.port,
          path,
          method,
          headers: signed,
          agent: this.#agent,
          signal,
        },
        (res) => resolve({ req, res }),
      );
      req.on('error', reject);
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        // As the SDK's NodeHttpHandler: a connection that does not open in time is a TimeoutError.
        const timer = setTimeout(() => {
          req.destroy(new ConnectTimeoutError(this.#connectTimeoutMs));
        }, this.#connectTimeoutMs);
        const clear = (): void => clearTimeout(timer);
        socket.once('connect', clear);
        socket.once('secureConnect', clear);
        socket.once('close', clear);
      });
      req.end(body ?? undefined);
    });
  }

  /** The request's path and its signed headers, with the credentials of now. */
  async #sign(method: string, key: string, headers: Record<string, string>, payloadHash: string, signal: AbortSignal): Promise<{ path: string; signed: Record<string, string> }> {
    const creds = await this.#credentials();
    signal.throwIfAborted();
    const path = `${this.#basePath}/${encodePath(key)}`;
    return { path, signed: this.#signer.sign(creds, { method, host: this.#host, path, headers, payloadHash }, new Date(Date.now() + this.#clockOffsetMs)) };
  }

  /** A GET's error answer: null for a missing key (a missing bucket is an error), else thrown. */
  #missingOrThrow(status: number, headers: Readonly<Record<string, string | string[] | undefined>>, text: string): null {
    const err = this.#errorFrom(status, headers, text);
    // S3 names a missing key (NoSuchKey) in its answer; a 404 that names nothing comes
    // from something else at the endpoint (a web server, a wrong path): not null, which
    // would tell the user that no volume is there, but an error (toS3zError says which).
    if (status === 404 && err.Code !== undefined && err.name !== 'NoSuchBucket') return null;
    throw err;
  }

  /**
   * An error answer's XML as an S3ResponseError (a body that could not be read is '': the
   * status still classifies it, 5xx retried, 403 access...); learns a clock skew from its Date.
   */
  #errorFrom(status: number, headers: Readonly<Record<string, string | string[] | undefined>>, text: string): S3ResponseError {
    const code = xmlField(text, 'Code');
    const dateHeader = headers.date;
    const date = typeof dateHeader === 'string' ? Date.parse(dateHeader) : NaN;
    if (Number.isFinite(date) && Math.abs(date - (Date.now() + this.#clockOffsetMs)) > SKEW_MS) this.#clockOffsetMs = date - Date.now();
    const requestId = headers['x-amz-request-id'];
    return new S3ResponseError(status, code, xmlField(text, 'Message'), typeof requestId === 'string' ? requestId : undefined);
  }
}

function metadataOf(headers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith('x-amz-meta-') && typeof v === 'string') out[k.slice(11)] = v;
  }
  return out;
}

/**
 * The whole body into one buffer of its announced length (`into` when that is its length);
 * short, long or broken: TransientError.
 */
function readBody(res: http.IncomingMessage, signal: AbortSignal, into?: Buffer): Promise<Buffer> {
  const header = res.headers['content-length'];
  const length = header === undefined ? undefined : Number(header);
  if (length !== undefined && !(Number.isSafeInteger(length) && length >= 0)) {
    res.destroy();
    return Promise.reject(new TransientError(`bad Content-Length ${header}`));
  }
  return new Promise((resolve, reject) => {
    // A new Buffer object over `into` per attempt: a digest memoized for an earlier attempt's
    // bytes (checksum.ts keys its memo by object) is never taken for this one's.
    const out = length === undefined ? null : into?.length === length ? Buffer.from(into.buffer, into.byteOffset, length) : Buffer.allocUnsafe(length);
    const chunks: Buffer[] = [];
    let at = 0;
    let settled = false;
    const done = (err: Error | null, body?: Buffer): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (err === null) {
        resolve(body!);
      } else {
        res.destroy();
        reject(err);
      }
    };
    const cut = (cause?: unknown): TransientError =>
      new TransientError(`body cut after ${at} of ${length ?? '?'} bytes`, cause === undefined ? undefined : { cause });
    const onAbort = (): void => done(cut(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    res.on('data', (c: Buffer) => {
      if (out === null) chunks.push(c);
      else if (at + c.length > out.length) return done(new TransientError(`body longer than its Content-Length ${out.length}`));
      else c.copy(out, at);
      at += c.length;
    });
    res.on('end', () => {
      if (out === null) done(null, Buffer.concat(chunks, at));
      else if (at !== out.length) done(cut());
      else done(null, out);
    });
    res.on('error', (err) => done(cut(err)));
    res.on('close', () => {
      if (!res.complete) done(cut());
    });
  });
}

function readSmall(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < MAX_ERROR_BODY) chunks.push(c);
      size += c.length;
    });
    res.on('end', () => resolve(Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8')));
    res.on('error', reject);
    res.on('close', () => {
      if (!res.complete) reject(new Error('error body cut'));
    });
  });
}

function xmlField(xml: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  if (!m) return undefined;
  return (m[1] ?? '').replace(/&(lt|gt|quot|apos|amp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e] ?? '');
}
