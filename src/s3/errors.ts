// Turns what the AWS SDK, the lean block path (block-http.ts) and Node's sockets
// throw into S3zErrors, and says which failures are transient. Only this file knows
// the SDK's error shapes; S3ResponseError gives the lean path's errors the same one.
import { S3zError, type ErrorCode } from '../errors.js';

interface SdkLikeError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

const RETRYABLE_NAMES = new Set([
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'RequestTimeoutException',
  'Throttling', 'ThrottlingException', 'TooManyRequests', 'TooManyRequestsException', 'TimeoutError',
  'AbortError', 'RequestTimeTooSkewed',
]);
const NET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const ACCESS_NAMES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired']);

/**
 * A failure we detected ourselves that is worth another attempt (short body, bad
 * checksum). `code` is what it becomes once the retries are spent.
 */
export class TransientError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransientError';
    this.code = options?.code ?? 'ES3';
  }
}

/**
 * An S3 error answer read by the lean path, shaped like the SDK's service errors
 * (name = the XML Code, or NotFound for a bare 404, as the SDK names them).
 */
export class S3ResponseError extends Error {
  readonly Code: string | undefined;
  readonly $metadata: { readonly httpStatusCode: number; readonly requestId?: string | undefined };
  readonly $fault: 'client' | 'server';
  constructor(status: number, code: string | undefined, message: string | undefined, requestId?: string) {
    super(message ?? 'UnknownError');
    this.name = code ?? (status === 404 ? 'NotFound' : 'Unknown');
    this.Code = code;
    this.$metadata = { httpStatusCode: status, requestId };
    this.$fault = status < 500 ? 'client' : 'server';
  }
}

/** The certificate errors Node's TLS reports by code (openssl's verify results). */
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED',
]);

/**
 * What went wrong in TLS, in words a user can act on, or undefined when TLS is not
 * the problem. These never pass with a retry: the endpoint or the trust is wrong.
 */
function tlsProblem(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as SdkLikeError).cause, depth++) {
    const code = (e as SdkLikeError).code;
    if (typeof code !== 'string') continue;
    if (CERT_CODES.has(code)) return `its certificate is not trusted (${code}); give Node the CA that signed it with NODE_EXTRA_CA_CERTS=/path/to/ca.pem`;
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `its certificate does not name this host (${code})`;
    if (code === 'EPROTO' || code.startsWith('ERR_SSL_')) {
      const msg = (e as SdkLikeError).message ?? '';
      if (/wrong version number|packet length too long|http request/i.test(msg)) return 'the server does not speak TLS there (an http:// endpoint given as https://?)';
      return `the TLS handshake failed (${code})`;
    }
  }
  return undefined;
}

function netCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as SdkLikeError).cause, depth++) {
    const code = (e as SdkLikeError).code;
    if (typeof code === 'string' && NET_CODES.has(code)) return code;
  }
  return undefined;
}

/** What the lean paths throw when a connection does not open in time (as the SDK's NodeHttpHandler, a TimeoutError). */
export class ConnectTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`no connection within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function connectTimeout(err: unknown): ConnectTimeoutError | undefined {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as SdkLikeError).cause, depth++) {
    if (e instanceof ConnectTimeoutError) return e;
  }
  return undefined;
}

/** Whether nothing answered at all: refused, no such host, no route, or no connection in time. */
export function isUnreachable(err: unknown): boolean {
  const code = netCode(err);
  return (code !== undefined && UNREACHABLE_CODES.has(code)) || connectTimeout(err) !== undefined;
}

/** Whether the error carries an answer of the endpoint (an HTTP status, even an error's). */
export function hasAnswer(err: unknown): boolean {
  return (err as SdkLikeError | undefined)?.$metadata?.httpStatusCode !== undefined;
}

/** Wrong bytes are seldom a passing fault: a few more tries, not the full budget. */
const CORRUPT_ATTEMPTS = 3;

/** `corruptFailures`: attempts of this operation so far that returned wrong bytes. */
export function isRetryable(err: unknown, corruptFailures = 0): boolean {
  if (err instanceof TransientError) return err.code !== 'ECORRUPT' || corruptFailures < CORRUPT_ATTEMPTS;
  if (err instanceof S3zError) return false;
  const e = err as SdkLikeError;
  if (netCode(err)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  // A 2xx whose body the SDK could not parse (cut or garbled XML): ask again.
  if (status !== undefined && status >= 200 && status < 300) return true;
  if (e.name && RETRYABLE_NAMES.has(e.name)) return true;
  if (e.$retryable) return true;
  // A socket that died under the SDK without a code still says so.
  return /socket hang up|aborted|premature close|timed? ?out/i.test(e.message ?? '');
}

/** The error a caller sees once retries are exhausted or the failure is permanent. */
export function toS3zError(err: unknown, what: string, bucket: string, endpoint: string): S3zError {
  if (err instanceof S3zError) return err;
  if (err instanceof TransientError) return new S3zError(err.code, `${what}: ${err.message}`, { cause: err });
  const e = err as SdkLikeError;
  const name = e.name ?? e.Code ?? '';
  const status = e.$metadata?.httpStatusCode;
  const code = netCode(err);
  if (name === 'PreconditionFailed' || status === 412) return new S3zError('EVOLUMEEXISTS', `${what}: the object already exists`, { cause: err });
  if (name === 'NoSuchBucket') return new S3zError('ENOBUCKET', `s3://${bucket}: the bucket does not exist at ${endpoint}`, { cause: err });
  if (ACCESS_NAMES.has(name) || status === 403) {
    return new S3zError('EACCESS', `s3://${bucket}: access denied by ${endpoint} (${name || 'HTTP 403'}): check the AWS credentials`, { cause: err });
  }
  if (name === 'CredentialsProviderError') {
    return new S3zError('EACCESS', `s3://${bucket}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)`, { cause: err });
  }
  const tls = tlsProblem(err);
  if (tls !== undefined) return new S3zError('EUNREACHABLE', `cannot talk to ${endpoint} for ${what}: ${tls}`, { cause: err });
  if (code && UNREACHABLE_CODES.has(code)) return new S3zError('EUNREACHABLE', `cannot reach ${endpoint} (${code}) for ${what}`, { cause: err });
  const unopened = connectTimeout(err);
  if (unopened) return new S3zError('EUNREACHABLE', `cannot reach ${endpoint} (${unopened.message}) for ${what}`, { cause: err });
  if (name === 'TimeoutError' || name === 'AbortError' || code === 'ETIMEDOUT') {
    return new S3zError('EUNREACHABLE', `${endpoint} did not answer in time for ${what}`, { cause: err });
  }
  if (status !== undefined && status >= 200 && status < 300) return new S3zError('ES3', `${what}: unreadable answer from ${endpoint}`, { cause: err });
  // S3 names what is missing (NoSuchKey, NoSuchBucket); a bare 404 to a request with a
  // body to say it in (HEADs have none, and their callers read a 404 themselves) comes
  // from something else at the endpoint: a web server, a wrong path.
  if (status === 404 && name === 'NotFound') {
    return new S3zError('ES3', `${what}: ${endpoint} answered 404 with no S3 error in it: it does not look like an S3 endpoint (check --endpoint or AWS_ENDPOINT_URL_S3)`, { cause: err });
  }
  // A bare Error's name says nothing: its message does.
  const label = name === 'Error' ? '' : name;
  const detail = status ? `HTTP ${status}${label ? ` ${label}` : ''}` : (code ?? label) || (e.message ?? String(err));
  return new S3zError('ES3', `${what}: ${detail}`, { cause: err });
}
