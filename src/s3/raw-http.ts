// Block GETs and PUTs over plain HTTP on bare keep-alive sockets.
// - GET: the kernel reads the body straight into the caller's buffer (net.Socket's
//   `onread` asks us for the memory of every read), so a body costs one copy. node:http's
//   parser copied each chunk into a fresh 64 KiB Buffer that we then copied again; at
//   0 ms that was ~1 s of the main thread per GiB, a third of it garbage collection
//   (docs/PERFORMANCE.md, session 11).
// - PUT: the head and the caller's body go out in one writev; the answer is a head and a
//   small body. node:http's request, agent and response objects cost ~10% of the daemon's
//   CPU in a sequential write (session 12).
// Only what a block request needs: HTTP/1.1, one request at a time per socket, an answer
// with a Content-Length body, or, to a PUT, a small chunked one (a server on node:http
// answers `writeHead(); end()` so: asking again would send every block twice). Anything
// else (a chunked GET body, no length, a head over HEAD_BYTES, a large error body) throws
// RawUnsupported before a byte is handed out, and the caller asks again through
// node:http: a PUT sent this way must be one that may be sent twice (no condition).
// States of a connection: busy (one request: its head, then its body) -> idle (in the
// pool, unref'd) -> busy ..., or destroyed. Invariants: a socket goes back to the pool
// only after its answer was read to the end and the whole request was written (a server
// may answer before reading a body: the socket is then closed, so the caller's body is
// never read after the call settles); an answer body is exactly its Content-Length; a
// reused socket that fails before any byte of its answer is replaced once (the request
// may be sent again: a server may close an idle keep-alive socket at any time).
import net from 'node:net';
import { ConnectTimeoutError, TransientError } from './errors.js';

export interface RawResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /** `into` itself for a 2xx body of its length, else a buffer of the body's own. */
  readonly body: Buffer;
}

/** The answer is not one this client reads: ask again another way. */
export class RawUnsupported extends Error {}

/** The status line and headers must fit here (S3's are well under 2 KiB). */
const HEAD_BYTES = 16 * 1024;
/** Error bodies (XML) larger than this go the other way. */
const MAX_ERROR_BODY = 64 * 1024;
/** A chunked answer to a PUT must fit here, framing included. */
const CHUNKED_BYTES = MAX_ERROR_BODY;
/** #parseHead's length for a chunked body. */
const CHUNKED = -1;
/** Idle sockets kept for reuse; more are closed. */
const MAX_IDLE = 64;
const CRLF2 = Buffer.from('\r\n\r\n');

interface Exchange {
  /** Where a 2xx answer body of this length lands (empty for a PUT). */
  readonly into: Buffer;
  readonly resolve: (r: RawResponse) => void;
  readonly reject: (err: Error) => void;
  headLength: number;
  status: number;
  headers: Record<string, string>;
  /** Where the body goes once the head is read (a chunked one: its framing too, until decoded). */
  body: Buffer | undefined;
  at: number;
  chunked: boolean;
}

class Connection {
  readonly socket: net.Socket;
  readonly head = Buffer.allocUnsafe(HEAD_BYTES);
  exchange: Exchange | undefined;
  reused = false;
  /** Whether any byte of the last exchange's answer came: before that, a reused socket may be replaced. */
  answered = false;
  #onIdleEnd: (() => void) | undefined;

  constructor(host: string, port: number) {
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: {
        // Called before every read: the kernel writes the bytes where this points.
        buffer: () => this.#memory(),
        callback: (n: number) => {
          this.#received(n);
          return true; // false would pause the socket
        },
      },
    });
  }

  #memory(): Uint8Array {
    const x = this.exchange;
    if (x === undefined) return this.head; // unasked-for bytes: #received ends the socket
    if (x.body === undefined) return this.head.subarray(x.headLength);
    return x.body.subarray(x.at);
  }

  #received(n: number): void {
    const x = this.exchange;
    if (x === undefined) {
      this.socket.destroy();
      return;
    }
    this.answered = true;
    if (x.body !== undefined) {
      x.at += n;
      if (x.chunked) this.#unchunk(x);
      else if (x.at === x.body.length) this.#finish(x);
      return;
    }
    const from = Math.max(0, x.headLength - 3);
    x.headLength += n;
    const end = this.head.subarray(0, x.headLength).indexOf(CRLF2, from);
    if (end < 0) {
      if (x.headLength === HEAD_BYTES) this.fail(new RawUnsupported(`a response head over ${HEAD_BYTES} bytes`));
      return;
    }
    let length: number;
    try {
      length = this.#parseHead(x, this.head.toString('latin1', 0, end));
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (length === CHUNKED) {
      x.chunked = true;
      x.body = Buffer.allocUnsafe(CHUNKED_BYTES);
      x.at = this.head.copy(x.body, 0, end + 4, x.headLength);
      this.#unchunk(x);
      return;
    }
    const ok = x.status >= 200 && x.status < 300;
    if (!ok && length > MAX_ERROR_BODY) return this.fail(new RawUnsupported(`an error body of ${length} bytes`));
    x.body = ok && length === x.into.length ? x.into : Buffer.allocUnsafe(length);
    const extra = x.headLength - (end + 4);
    if (extra > length) return this.fail(new TransientError(`${extra - length} bytes past the end of a body of ${length}`));
    this.head.copy(x.body, 0, end + 4, x.headLength);
    x.at = extra;
    if (x.at === length) this.#finish(x);
  }

  /** Finishes a chunked answer once all of it is in (a PUT's: an empty body, or an error's XML). */
  #unchunk(x: Exchange): void {
    const buf = x.body!;
    let decoded: { body: Buffer; end: number } | undefined;
    try {
      decoded = decodeChunked(buf.subarray(0, x.at));
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (decoded === undefined) {
      if (x.at === buf.length) this.fail(new RawUnsupported(`a chunked answer over ${buf.length} bytes`));
      return;
    }
    // Bytes past the answer's end: it stands, the socket is not used again.
    if (decoded.end < x.at) x.headers.connection = 'close';
    x.body = decoded.body;
    this.#finish(x);
  }

  /** Fills status and headers; returns the body's length, or CHUNKED. */
  #parseHead(x: Exchange, text: string): number {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new TransientError(`not an HTTP/1.x answer: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
    x.status = Number(m[2]);
    if (m[1] === '0') x.headers.connection ??= 'close';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] ?? '';
      const colon = line.indexOf(':');
      if (colon <= 0) throw new TransientError(`a malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      x.headers[name] = x.headers[name] === undefined ? value : `${x.headers[name]}, ${value}`;
    }
    if (x.status < 200) throw new RawUnsupported(`an interim ${x.status} answer`);
    const coding = x.headers['transfer-encoding'];
    if (coding !== undefined) {
      if (x.into.length > 0 || coding.toLowerCase() !== 'chunked') throw new RawUnsupported(`a body with transfer-encoding ${coding}`);
      return CHUNKED;
    }
    const header = x.headers['content-length'];
    const length = header === undefined ? NaN : Number(header);
    if (!(Number.isSafeInteger(length) && length >= 0)) throw new RawUnsupported(`Content-Length ${header ?? 'missing'}`);
    return length;
  }

  #finish(x: Exchange): void {
    this.exchange = undefined;
    x.resolve({ status: x.status, headers: x.headers, body: x.body ?? Buffer.alloc(0) });
  }

  /** Ends the exchange in flight with `err`, and the socket with it. */
  fail(err: Error): void {
    const x = this.exchange;
    this.exchange = undefined;
    this.socket.destroy();
    x?.reject(err);
  }

  /** Watches an idle socket: a server that closes it takes it out of the pool. */
  idle(onEnd: () => void): void {
    this.#onIdleEnd = onEnd;
    this.socket.unref();
  }

  busy(): void {
    this.#onIdleEnd = undefined;
    this.socket.ref();
  }

  ended(): void {
    this.#onIdleEnd?.();
  }
}

const NO_BODY = Buffer.alloc(0);

export class RawHttpPool {
  #host: string;
  #port: number;
  #connectTimeoutMs: number;
  #idle: Connection[] = [];
  #closed = false;

  constructor(url: URL, connectTimeoutMs: number) {
    if (url.protocol !== 'http:') throw new TypeError('RawHttpPool: plain http: only');
    this.#host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#port = url.port === '' ? 80 : Number(url.port);
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  /** One GET of `path` with these (signed) headers; a 2xx body of `into`'s length lands in `into`. */
  get(path: string, headers: Readonly<Record<string, string>>, into: Buffer, signal: AbortSignal): Promise<RawResponse> {
    return this.#request(`GET ${path} HTTP/1.1\r\n`, headers, null, into, signal);
  }

  /**
   * One PUT of `body` (whose content-length is in the signed headers). Only for a PUT that
   * may be sent twice. `body` is not read once this settles.
   */
  put(path: string, headers: Readonly<Record<string, string>>, body: Buffer, signal: AbortSignal): Promise<RawResponse> {
    return this.#request(`PUT ${path} HTTP/1.1\r\n`, headers, body, NO_BODY, signal);
  }

  async #request(line: string, headers: Readonly<Record<string, string>>, body: Buffer | null, into: Buffer, signal: AbortSignal): Promise<RawResponse> {
    let head = line;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    head += '\r\n';
    const conn = this.#take();
    try {
      return await this.#exchange(conn, head, body, into, signal);
    } catch (err) {
      // A kept-alive socket the server had closed: once more, on a new one.
      if (!conn.reused || conn.answered || signal.aborted) throw err;
      return await this.#exchange(this.#connect(), head, body, into, signal);
    }
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) c.socket.destroy();
  }

  #take(): Connection {
    const conn = this.#idle.pop();
    if (conn === undefined) return this.#connect();
    conn.busy();
    return conn;
  }

  #connect(): Connection {
    const conn = new Connection(this.#host, this.#port);
    const { socket } = conn;
    // As node:http's path (block-http.ts): a connection that does not open in time is a TimeoutError.
    const timer = setTimeout(() => {
      conn.fail(new ConnectTimeoutError(this.#connectTimeoutMs));
    }, this.#connectTimeoutMs);
    socket.once('connect', () => clearTimeout(timer));
    socket.on('error', (err) => {
      clearTimeout(timer);
      // The socket's own error (its code says unreachable, reset...), as node:http gives it.
      conn.fail(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      conn.ended();
      if (conn.exchange !== undefined) conn.fail(new TransientError(`connection closed after ${conn.answered ? 'part of' : 'none of'} the answer`));
    });
    return conn;
  }

  #exchange(conn: Connection, head: string, body: Buffer | null, into: Buffer, signal: AbortSignal): Promise<RawResponse> {
    return new Promise<RawResponse>((resolve, reject) => {
      // As node:http's path: an AbortError before the answer, a cut body during it.
      const onAbort = (): void => {
        const x = conn.exchange;
        conn.fail(
          x?.body !== undefined
            ? new TransientError(`body cut after ${x.at} of ${x.body.length} bytes`, { cause: signal.reason })
            : Object.assign(new Error('the request was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' }),
        );
      };
      const settle = (): void => signal.removeEventListener('abort', onAbort);
      conn.exchange = {
        into,
        resolve: (r) => {
          settle();
          this.#release(conn, r);
          resolve(r);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
        headLength: 0, status: 0, headers: {}, body: undefined, at: 0, chunked: false,
      };
      conn.answered = false;
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (body === null) {
        conn.socket.write(head, 'latin1');
        return;
      }
      // One writev for head and body; the socket holds `body` (writableLength counts it)
      // until the kernel has taken all of it, or until the socket is destroyed.
      conn.socket.cork();
      conn.socket.write(head, 'latin1');
      conn.socket.write(body);
      conn.socket.uncork();
    });
  }

  #release(conn: Connection, r: RawResponse): void {
    const close = /\bclose\b/i.test(r.headers.connection ?? '');
    // Answered before its body was all written: the rest must not be sent from a buffer
    // the caller may now reuse, nor read by the server as a next request.
    if (close || conn.socket.writableLength > 0 || this.#closed || this.#idle.length >= MAX_IDLE || conn.socket.destroyed) {
      conn.socket.destroy();
      return;
    }
    conn.reused = true;
    conn.idle(() => {
      const i = this.#idle.indexOf(conn);
      if (i >= 0) this.#idle.splice(i, 1);
    });
    this.#idle.push(conn);
  }
}

/**
 * A whole chunked body (RFC 9112 §7.1) at the start of `buf`: its bytes and where its
 * framing ended (trailers skipped); undefined while more is to come.
 */
export function decodeChunked(buf: Buffer): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = buf.toString('latin1', at, eol).split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(size)) throw new TransientError(`a malformed chunk size: ${JSON.stringify(size.slice(0, 20))}`);
    const length = parseInt(size, 16);
    at = eol + 2;
    if (length === 0) {
      for (;;) {
        const line = buf.indexOf('\r\n', at);
        if (line < 0) return undefined;
        if (line === at) return { body: Buffer.concat(parts), end: line + 2 };
        at = line + 2;
      }
    }
    if (at + length + 2 > buf.length) return undefined;
    if (buf[at + length] !== 0x0d || buf[at + length + 1] !== 0x0a) throw new TransientError('a chunk not ended by CRLF');
    parts.push(buf.subarray(at, at + length));
    at += length + 2;
  }
}
