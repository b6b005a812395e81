// AWS Signature Version 4 header signing for S3 (AWS4-HMAC-SHA256, service "s3"),
// on node:crypto alone: what the SDK's signer does for one request, without its
// middleware. Stateless but for one cached signing key (it changes once a day).
// Invariants: every header handed in is signed, with host, x-amz-date,
// x-amz-content-sha256 and (session credentials) x-amz-security-token added; the
// payload hash is always a real SHA-256 (never UNSIGNED-PAYLOAD: the signed hash
// is what makes S3 refuse a damaged body, DESIGN §2); paths are encoded once, as
// S3 wants (no double encoding).
import { createHash, createHmac } from 'node:crypto';

export interface SigningCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

export interface RequestToSign {
  readonly method: string;
  /** The Host header as sent (port included when not the scheme's default). */
  readonly host: string;
  /** The request path, already URI-encoded (encodePath), which is also the canonical URI. */
  readonly path: string;
  /** Lower-case names; every one is sent and signed. */
  readonly headers: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the body, sent as x-amz-content-sha256. */
  readonly payloadHash: string;
}

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export class SigV4Signer {
  readonly region: string;
  #key: { secret: string; day: string; key: Buffer } | null = null;

  constructor(region: string) {
    this.region = region;
  }

  /** The headers to send: the caller's, plus the signing ones and Authorization. */
  sign(creds: SigningCredentials, req: RequestToSign, now: Date): Record<string, string> {
    const amzDate = amzDateOf(now);
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = { ...req.headers };
    headers.host = req.host;
    headers['x-amz-date'] = amzDate;
    headers['x-amz-content-sha256'] = req.payloadHash;
    if (creds.sessionToken !== undefined && creds.sessionToken !== '') headers['x-amz-security-token'] = creds.sessionToken;
    const names = Object.keys(headers).sort();
    let canonicalHeaders = '';
    for (const n of names) canonicalHeaders += `${n}:${String(headers[n]).trim().replace(/\s+/g, ' ')}\n`;
    const signedHeaders = names.join(';');
    // No query string: object GET and PUT carry none.
    const canonical = `${req.method}\n${req.path}\n\n${canonicalHeaders}\n${signedHeaders}\n${req.payloadHash}`;
    const scope = `${day}/${this.region}/s3/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`;
    const signature = createHmac('sha256', this.#signingKey(creds.secretAccessKey, day)).update(toSign).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }

  #signingKey(secret: string, day: string): Buffer {
    const cached = this.#key;
    if (cached !== null && cached.secret === secret && cached.day === day) return cached.key;
    let key = hmac(`AWS4${secret}`, day);
    for (const part of [this.region, 's3', 'aws4_request']) key = hmac(key, part);
    this.#key = { secret, day, key };
    return key;
  }
}

/** `20150830T123600Z`. */
export function amzDateOf(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** A key as a URL path: each segment RFC 3986-encoded (UTF-8), '/' kept. */
export function encodePath(key: string): string {
  return key.split('/').map(encodeSegment).join('/');
}

function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
