// Block GETs and PUTs on bare sockets (src/s3/raw-http.ts, through S3Bucket.get with a
// buffer to land in and S3Bucket.put), against a scripted HTTP server that answers what
// a real S3 server seldom does on demand: a keep-alive socket closed under a request,
// bodies cut or too long, chunked bodies, heads too large, interim answers, an answer
// before the request's body was read. Each must end in the right bytes (after a retry,
// or through node:http) or in the error node:http's path gives.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { silentLogger } from '../../dist/log.js';
import { decodeChunked } from '../../dist/s3/raw-http.js';

const BODY = 256 * 1024;

interface Request {
  readonly method: string;
  readonly path: string;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The request's body (empty for a request answered before it was read). */
  body: Buffer;
  /** The how-manieth request on its socket (1 for the first). */
  readonly onSocket: number;
  readonly socket: net.Socket;
}

/**
 * Answers each request with `answer(req)`: bytes to write (then keep the socket open), or
 * 'drop' to destroy it unanswered. A request with a body is answered once the body is in,
 * except one whose path holds "/early": answered at its head, and its socket never read again.
 */
async function scripted(t: TestContext, answer: (req: Request) => Buffer | 'drop'): Promise<{ bucket: S3Bucket; connections: () => number; requests: Request[] }> {
  let connections = 0;
  const requests: Request[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    let onSocket = 0;
    let waiting: { req: Request; length: number } | undefined;
    const reply = (req: Request): void => {
      const out = answer(req);
      if (out === 'drop') socket.destroy();
      else socket.write(out);
    };
    socket.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      for (;;) {
        if (waiting !== undefined) {
          if (pending.length < waiting.length) return;
          waiting.req.body = pending.subarray(0, waiting.length);
          pending = pending.subarray(waiting.length);
          const { req } = waiting;
          waiting = undefined;
          reply(req);
          continue;
        }
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [line = '', ...lines] = pending.subarray(0, end).toString('latin1').split('\r\n');
        pending = pending.subarray(end + 4);
        const headers: Record<string, string> = {};
        for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const [method = '', path = ''] = line.split(' ');
        const req: Request = { method, path, headers, body: Buffer.alloc(0), onSocket: ++onSocket, socket };
        requests.push(req);
        const length = Number(headers['content-length'] ?? 0);
        if (path.includes('/early')) {
          socket.pause();
          reply(req);
          return;
        }
        if (length > 0) waiting = { req, length };
        else reply(req);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = 'AKIDSCRIPTED';
  process.env.AWS_SECRET_ACCESS_KEY = 'scripted-secret';
  const { port } = server.address() as net.AddressInfo;
  const bucket = new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: `http://127.0.0.1:${port}`, retry: { retries: 3, minDelayMs: 1, maxDelayMs: 5, maxTotalMs: 5000 } }, 'b', silentLogger);
  t.after(async () => {
    bucket.destroy();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    for (const [k, v] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  return { bucket, connections: () => connections, requests };
}

function answer(status: string, headers: Record<string, string | number>, body: Buffer = Buffer.alloc(0)): Buffer {
  let head = `HTTP/1.1 ${status}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);
}

const ok = (body: Buffer, extra: Record<string, string | number> = {}): Buffer =>
  answer('200 OK', { 'Content-Length': body.length, ETag: '"e1"', 'x-amz-meta-s3z-sha256': 'abc', ...extra }, body);

test('raw GET: the body lands in the caller\'s buffer, with its ETag and metadata; sockets are kept alive and used again', async (t) => {
  const body = randomBytes(BODY);
  const { bucket, connections, requests } = await scripted(t, () => ok(body));
  for (let i = 0; i < 3; i++) {
    const into = Buffer.alloc(BODY);
    const obj = await bucket.get(`k${i}`, undefined, into);
    assert.ok(obj);
    assert.ok(obj.body.equals(body));
    assert.equal(obj.body.buffer, into.buffer, 'read into the caller\'s memory');
    assert.equal(obj.etag, '"e1"');
    assert.deepEqual(obj.metadata, { 's3z-sha256': 'abc' });
  }
  assert.equal(connections(), 1, 'one keep-alive socket for three GETs');
  assert.deepEqual(requests.map((r) => r.path), ['/b/k0', '/b/k1', '/b/k2']);
  assert.equal(bucket.stats.retries, 0);
});

test('raw GET: a kept-alive socket closed under the next request is replaced at once, without a retry', async (t) => {
  const body = randomBytes(BODY);
  let dropped = false;
  const { bucket, connections } = await scripted(t, (req) => {
    if (req.onSocket !== 2 || dropped) return ok(body);
    dropped = true;
    return 'drop';
  });
  for (let i = 0; i < 3; i++) assert.ok((await bucket.get(`k${i}`, undefined, Buffer.alloc(BODY)))?.body.equals(body));
  assert.equal(connections(), 2);
  assert.equal(bucket.stats.retries, 0, 'the pool asked again on a new socket');
});

test('raw GET: a body cut short, or longer than its Content-Length, is retried; the right bytes come back', async (t) => {
  const body = randomBytes(BODY);
  const small = randomBytes(1000);
  let n = 0;
  const { bucket, connections } = await scripted(t, (req) => {
    n++;
    const key = req.path.slice(3);
    if (key === 'big' && n === 1) {
      req.socket.end(ok(body).subarray(0, 100_000)); // cut: the server hangs up
      return Buffer.alloc(0);
    }
    // More bytes than announced, in the same read as the head: refused, asked again.
    if (key === 'small' && n === 3) return Buffer.concat([ok(small), Buffer.from('garbage')]);
    // After a whole body: the answer stands; the socket is not used again.
    if (key === 'trailing') return Buffer.concat([ok(body), Buffer.from('garbage')]);
    return ok(key === 'small' ? small : body);
  });
  assert.ok((await bucket.get('big', undefined, Buffer.alloc(BODY)))?.body.equals(body));
  assert.equal(bucket.stats.retries, 1);
  assert.ok((await bucket.get('small', undefined, Buffer.alloc(small.length)))?.body.equals(small));
  assert.equal(bucket.stats.retries, 2);
  assert.ok((await bucket.get('trailing', undefined, Buffer.alloc(BODY)))?.body.equals(body));
  const before = connections();
  await new Promise((r) => setTimeout(r, 20));
  assert.ok((await bucket.get('after', undefined, Buffer.alloc(BODY)))?.body.equals(body));
  assert.equal(connections(), before + 1, 'a new socket after the one that sent too much');
  assert.equal(bucket.stats.retries, 2);
});

test('raw GET: answers it does not read (chunked, an interim 100) go through node:http, right bytes', async (t) => {
  const body = randomBytes(BODY);
  const chunked = (): Buffer => {
    const half = BODY / 2;
    const chunk = (b: Buffer): Buffer => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    return Buffer.concat([answer('200 OK', { 'Transfer-Encoding': 'chunked', ETag: '"c"' }), chunk(body.subarray(0, half)), chunk(body.subarray(half)), Buffer.from('0\r\n\r\n')]);
  };
  const cases: Record<string, () => Buffer> = {
    chunked,
    interim: () => Buffer.concat([Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'), ok(body)]),
  };
  const { bucket } = await scripted(t, (req) => (cases[req.path.slice(3)] ?? (() => ok(body)))());
  for (const name of Object.keys(cases)) {
    const obj = await bucket.get(name, undefined, Buffer.alloc(BODY));
    assert.ok(obj?.body.equals(body), name);
  }
  assert.equal(bucket.stats.retries, 0, 'no retry: another way at once');
});

test('raw GET: 404 NoSuchKey is null, 503 SlowDown is retried, 403 is EACCESS at once', async (t) => {
  const body = randomBytes(BODY);
  const xml = (code: string): Buffer => Buffer.from(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>m</Message></Error>`);
  let slow = 0;
  const { bucket } = await scripted(t, (req) => {
    const key = req.path.slice(3);
    if (key === 'missing') return answer('404 Not Found', { 'Content-Length': xml('NoSuchKey').length }, xml('NoSuchKey'));
    if (key === 'slow' && slow++ < 2) return answer('503 Slow Down', { 'Content-Length': xml('SlowDown').length }, xml('SlowDown'));
    if (key === 'denied') return answer('403 Forbidden', { 'Content-Length': xml('AccessDenied').length }, xml('AccessDenied'));
    return ok(body);
  });
  assert.equal(await bucket.get('missing', undefined, Buffer.alloc(BODY)), null);
  assert.ok((await bucket.get('slow', undefined, Buffer.alloc(BODY)))?.body.equals(body));
  assert.equal(bucket.stats.retries, 2);
  await assert.rejects(bucket.get('denied', undefined, Buffer.alloc(BODY)), (err: { code?: string }) => err.code === 'EACCESS');
});

test('raw GET: nothing listening is EUNREACHABLE, as through node:http', async (t) => {
  // The credentials of a scripted server, whose socket is then closed.
  const { bucket: unused } = await scripted(t, () => Buffer.alloc(0));
  unused.destroy();
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  const bucket = new S3Bucket({ ...DEFAULT_S3_CONFIG, endpoint: `http://127.0.0.1:${port}`, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 2, maxTotalMs: 1000 } }, 'b', silentLogger);
  try {
    await assert.rejects(bucket.get('k', undefined, Buffer.alloc(BODY)), (err: { code?: string }) => err.code === 'EUNREACHABLE');
  } finally {
    bucket.destroy();
  }
});

const stored = (): Buffer => answer('200 OK', { 'Content-Length': 0, ETag: '"p1"' });

test('raw PUT: head and body on one kept-alive socket, the body as given, the ETag back', async (t) => {
  const bodies = [randomBytes(BODY), randomBytes(1000), randomBytes(BODY)];
  const { bucket, connections, requests } = await scripted(t, () => stored());
  for (const [i, body] of bodies.entries()) {
    assert.equal(await bucket.put(`k${i}`, body, { metadata: { 's3z-sha256': 'x' } }), '"p1"');
  }
  assert.equal(connections(), 1, 'one keep-alive socket for three PUTs');
  assert.deepEqual(requests.map((r) => `${r.method} ${r.path}`), ['PUT /b/k0', 'PUT /b/k1', 'PUT /b/k2']);
  for (const [i, r] of requests.entries()) {
    assert.ok(r.body.equals(bodies[i]!), `body ${i}`);
    assert.equal(r.headers['x-amz-meta-s3z-sha256'], 'x');
    assert.match(r.headers.authorization ?? '', /^AWS4-HMAC-SHA256 Credential=AKIDSCRIPTED\//);
    assert.equal(r.headers.connection, undefined, 'not node:http (which says Connection: keep-alive)');
  }
  assert.equal(bucket.stats.retries, 0);
});

test('raw PUT: a kept-alive socket closed under the next PUT is replaced at once; the whole body arrives', async (t) => {
  const body = randomBytes(BODY);
  let dropped = false;
  const { bucket, connections, requests } = await scripted(t, (req) => {
    if (req.onSocket !== 2 || dropped) return stored();
    dropped = true;
    return 'drop';
  });
  for (let i = 0; i < 3; i++) await bucket.put(`k${i}`, body, {});
  assert.equal(connections(), 2);
  assert.equal(bucket.stats.retries, 0, 'the pool sent it again on a new socket');
  assert.equal(requests.length, 4);
  for (const r of requests) assert.ok(r.body.equals(body));
});

test('raw PUT: an answer before the body was read ends that socket (never reused under a body still going out)', async (t) => {
  // More than loopback's socket buffers hold: the client is still writing when the answer comes.
  const big = randomBytes(32 * 1024 * 1024);
  const xml = Buffer.from('<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>m</Message></Error>');
  const { bucket, connections, requests } = await scripted(t, (req) =>
    req.path.includes('/early') ? answer('403 Forbidden', { 'Content-Length': xml.length }, xml) : stored(),
  );
  await bucket.put('first', randomBytes(1000), {});
  assert.equal(connections(), 1);
  await assert.rejects(bucket.put('early', big, {}), (err: { code?: string }) => err.code === 'EACCESS');
  assert.equal(connections(), 1, 'the early answer came on the kept-alive socket');
  await bucket.put('after', randomBytes(1000), {});
  assert.equal(connections(), 2, 'a new socket after the one answered mid-body');
  assert.deepEqual(requests.map((r) => r.path), ['/b/first', '/b/early', '/b/after']);
  assert.equal(requests[2]!.body.length, 1000);
});

test('raw PUT: chunked answers (as a server on node:http sends) are read on the bare socket: one PUT each', async (t) => {
  const body = randomBytes(BODY);
  const xml = Buffer.from('<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>m</Message></Error>');
  const chunked = (status: string, parts: Buffer[], trailer = ''): Buffer =>
    Buffer.concat([
      answer(status, { 'Transfer-Encoding': 'chunked', ETag: '"c"' }),
      ...parts.map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)};ext=1\r\n`), p, Buffer.from('\r\n')])),
      Buffer.from(`0\r\n${trailer}\r\n`),
    ]);
  const { bucket, connections, requests } = await scripted(t, (req) => {
    const key = req.path.slice(3);
    if (key === 'empty') return chunked('200 OK', []);
    if (key === 'trailer') return chunked('200 OK', [], 'x-trailer: 1\r\n');
    if (key === 'denied') return chunked('403 Forbidden', [xml.subarray(0, 30), xml.subarray(30)]);
    return stored();
  });
  assert.equal(await bucket.put('empty', body, {}), '"c"');
  assert.equal(await bucket.put('trailer', body, {}), '"c"');
  await assert.rejects(bucket.put('denied', body, {}), (err: { code?: string; message?: string }) => err.code === 'EACCESS' && /AccessDenied/.test(err.message ?? ''));
  await bucket.put('after', body, {});
  assert.deepEqual(requests.map((r) => r.path), ['/b/empty', '/b/trailer', '/b/denied', '/b/after'], 'each sent once');
  for (const r of requests) {
    assert.ok(r.body.equals(body));
    assert.equal(r.headers.connection, undefined, 'all on bare sockets');
  }
  assert.equal(connections(), 1, 'the socket is used again after each chunked answer');
});

test('raw PUT: an answer it does not read goes through node:http, and a conditional PUT never goes on a bare socket', async (t) => {
  const body = randomBytes(BODY);
  const interim = (): Buffer => Buffer.concat([Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'), answer('200 OK', { 'Content-Length': 0, ETag: '"i"' })]);
  const { bucket, requests } = await scripted(t, (req) => (req.path === '/b/interim' ? interim() : stored()));
  assert.equal(await bucket.put('interim', body, {}), '"i"');
  assert.equal(bucket.stats.retries, 0, 'no retry: another way at once');
  assert.deepEqual(requests.map((r) => [r.path, r.headers.connection]), [['/b/interim', undefined], ['/b/interim', 'keep-alive']]);
  for (const r of requests) assert.ok(r.body.equals(body));
  await bucket.put('lease', Buffer.from('{}'), { ifAbsent: true });
  const lease = requests.at(-1)!;
  assert.equal(lease.headers['if-none-match'], '*');
  assert.equal(lease.headers.connection, 'keep-alive', 'sent by node:http: a bare socket may send a request twice');
});

test('raw PUT: 503 SlowDown is retried with the same body; a refused payload hash (400) is a failure at once', async (t) => {
  const body = randomBytes(BODY);
  const xml = (code: string): Buffer => Buffer.from(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>m</Message></Error>`);
  let slow = 0;
  const { bucket, requests } = await scripted(t, (req) => {
    const key = req.path.slice(3);
    if (key === 'slow' && slow++ < 2) return answer('503 Slow Down', { 'Content-Length': xml('SlowDown').length }, xml('SlowDown'));
    if (key === 'bad') return answer('400 Bad Request', { 'Content-Length': xml('XAmzContentSHA256Mismatch').length }, xml('XAmzContentSHA256Mismatch'));
    return stored();
  });
  await bucket.put('slow', body, {});
  assert.equal(bucket.stats.retries, 2);
  assert.equal(requests.filter((r) => r.path === '/b/slow').length, 3);
  for (const r of requests) assert.ok(r.body.equals(body));
  await assert.rejects(bucket.put('bad', body, {}), (err: { code?: string; message?: string }) => err.code === 'ES3' && /HTTP 400 XAmzContentSHA256Mismatch/.test(err.message ?? ''));
  assert.equal(requests.filter((r) => r.path === '/b/bad').length, 1, 'a refused body is not sent again');
});

test('decodeChunked: whole bodies, trailers, more to come, bad framing', () => {
  const enc = (text: string): Buffer => Buffer.from(text, 'latin1');
  assert.deepEqual(decodeChunked(enc('3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n')), { body: enc('abcde'), end: 24 });
  assert.deepEqual(decodeChunked(enc('0\r\nt: 1\r\n\r\nNEXT')), { body: enc(''), end: 11 });
  for (const partial of ['3\r\nab', '3\r\nabc\r\n', '0\r\n', '0\r\nt: 1\r\n', '']) assert.equal(decodeChunked(enc(partial)), undefined, JSON.stringify(partial));
  assert.throws(() => decodeChunked(enc('zz\r\n')), /malformed chunk size/);
  assert.throws(() => decodeChunked(enc('3\r\nabcd\r\n0\r\n\r\n')), /not ended by CRLF/);
});
