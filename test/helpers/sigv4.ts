// AWS Signature V4 for hand-made S3 requests (path-style), so tests that drive
// plain node:http to see bytes exactly still send what a server which checks
// signatures (RGW, AWS) accepts. The payload hash is the body's SHA-256 unless the
// caller gives another one (to prove a server refuses a mismatch).
import { createHash, createHmac } from 'node:crypto';

export interface SigV4Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
  readonly region: string;
}

export interface SignInput {
  readonly method: string;
  readonly url: URL;
  /** Extra headers; every one given is signed. */
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | undefined;
  /** x-amz-content-sha256 to send and sign; default the body's SHA-256. */
  readonly payloadHash?: string;
  readonly date?: Date;
}

/** The headers to send (host included, exactly as signed). */
export function signV4(creds: SigV4Credentials, req: SignInput): Record<string, string> {
  const body = req.body ?? Buffer.alloc(0);
  const amzDate = (req.date ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  headers.host = req.url.host;
  headers['x-amz-date'] = amzDate;
  headers['x-amz-content-sha256'] = req.payloadHash ?? sha256Hex(body);
  if (creds.sessionToken !== undefined) headers['x-amz-security-token'] = creds.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${String(headers[n]).trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  // S3 encodes each path segment once (no double encoding, unlike other services).
  const canonicalUri = req.url.pathname
    .split('/')
    .map((seg) => encode(decodeURIComponent(seg)))
    .join('/');
  const query = [...req.url.searchParams.entries()]
    .map(([k, v]) => [encode(k), encode(v)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonical = [req.method.toUpperCase(), canonicalUri, query, canonicalHeaders, signedHeaders, headers['x-amz-content-sha256']].join('\n');
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(Buffer.from(canonical))].join('\n');
  let key: Buffer = hmac(`AWS4${creds.secretAccessKey}`, day);
  for (const part of [creds.region, 's3', 'aws4_request']) key = hmac(key, part);
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}

/** Credentials from a TestS3's env (test/helpers/s3.ts). */
export function credentialsFrom(env: Record<string, string>): SigV4Credentials {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId === undefined || secretAccessKey === undefined) throw new Error('the test server has no credentials in its env');
  return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN, region: env.AWS_REGION ?? 'us-east-1' };
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** RFC 3986 unreserved characters stay; everything else is %XX (UTF-8). */
function encode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
