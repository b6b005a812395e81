// A fault-injecting HTTP reverse proxy, put in front of an S3-compatible server
// (s3rver) for fault tests and, with setLatency(), for benchmarks that emulate S3's
// round-trip time (DESIGN §6: this kernel has no netem). node:http only.
//
// Addressing: path-style only, `http://127.0.0.1:PORT/<bucket>/<key>?<query>`; the
// key a rule sees is the URL-decoded path after `/<bucket>/` ('' for a bucket-level
// request such as LIST, HeadBucket or DeleteObjects). The Host header and any
// signature are forwarded unchanged, so the target must not check signatures
// (s3rver does not).
//
// State:
// - latencyMs: waited before every request is handled, forwarded or faulted.
// - rules: an ordered list. A request takes, ON ARRIVAL, the first rule whose
//   method and key match and that has firings left (`times`, default 1, Infinity
//   allowed); that firing is consumed and counted at once, so concurrent requests
//   share `times` exactly. A `stale` rule only matches a GET/HEAD of a key whose
//   previous version is known (see history). Spent rules stay listed, inert, until
//   clearRules().
// - counts: requests received per method (every request, faulted or not) and
//   firings per rule name. resetCounts() zeroes both.
// - recorded: with `record`, the method, key and headers of every request received
//   (bodies never), in arrival order, for tests that check what went on the wire;
//   at most `record.max` (default 10000), oldest dropped first. resetCounts() clears it.
// - history (for `stale`): for each tracked key (matching `history.keys`), the
//   current and the previous version as seen through successful plain PUTs, DELETEs
//   and DeleteObjects (POST ?delete) that passed the proxy. A version is the body and
//   the headers a GET would answer, or "absent", or "unknown" (a CopyObject, or a
//   body larger than maxBytes). A key the proxy has never seen written is assumed
//   absent before its first write (true for the fresh keys tests use). Memory is
//   bounded: at most `maxKeys` keys and `maxBytes` of bodies, least recently written
//   keys evicted first; an evicted key is forgotten, i.e. treated as never seen.
//
// Invariants:
// - A request no rule touches reaches the target with its method, path, query,
//   headers (less hop-by-hop ones and Expect) and body byte for byte, and the answer
//   comes back the same way; bodies are streamed (piped), never buffered whole,
//   except the copy the history keeps of tracked PUT bodies and the small XML body
//   of a DeleteObjects.
// - `status`, `reset` and `stale` never reach the target. A `delay`ed request has
//   its body read into memory while held (so that a client hanging up is seen) and
//   reaches the target only if the client is still connected when the delay ends,
//   unless `forwardAbandoned` (then also when its body had arrived whole: a write
//   the server applies after the client gave up). The plain latency does not read
//   bodies: a request abandoned during the latency may still be forwarded.
// - `truncate` and `corrupt` keep the target's status and headers, Content-Length
//   included: truncate sends exactly min(N, length) body bytes then closes the
//   client's connection; corrupt sends every byte, XOR 0xff on the chosen ones.
// - stop() cancels held requests, closes the listener and destroys every client
//   and upstream socket; it is idempotent.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export type FaultAction =
  /** Answer with an S3-style XML error without forwarding. `code` defaults from the status. */
  | { readonly status: number; readonly code?: string; readonly message?: string }
  /** Destroy the client's connection (TCP RST) without answering or forwarding. */
  | 'reset'
  /** Forward, send only the first N body bytes (Content-Length kept), close the connection. */
  | { readonly truncate: number }
  /** Forward, flip the first body byte (XOR 0xff). */
  | 'corrupt'
  /** Forward, flip `length` (default 1) body bytes from offset `at`. */
  | { readonly corrupt: { readonly at: number; readonly length?: number } }
  /**
   * Hold the request this long (on top of the latency), reading its body, then forward
   * it if the client is still there, or, with forwardAbandoned, if its body arrived whole.
   */
  | { readonly delay: number; readonly forwardAbandoned?: boolean }
  /** GET/HEAD: answer with the version before the latest write seen (404 NoSuchKey if it was absent). */
  | 'stale';

export interface FaultRule {
  /** Name under which firings are counted (rules sharing a name share a count); default `#<n> <action>`. */
  readonly name?: string;
  /** HTTP method, any case; default any. */
  readonly method?: string;
  /** Tested against the decoded key (path after `/<bucket>/`); default any. */
  readonly key?: RegExp;
  /** Tested against the query string (as URLSearchParams prints it: `continuation-token=…`); default any. */
  readonly query?: RegExp;
  /** Firings before the rule goes inert; default 1; Infinity allowed. */
  readonly times?: number;
  readonly action: FaultAction;
}

export interface HistoryOptions {
  /** Keys whose versions are kept (tested against the key, not the bucket); default all. */
  readonly keys?: RegExp;
  /** Default 256. */
  readonly maxKeys?: number;
  /** Bytes of bodies kept across all keys; default 64 MiB. */
  readonly maxBytes?: number;
}

export interface FaultProxyOptions {
  readonly latencyMs?: number;
  /** Version history for `stale`; false turns it off (no body is then ever copied). */
  readonly history?: HistoryOptions | false;
  /** Keep what each request carried (not its body): see recorded(). */
  readonly record?: boolean | { readonly max?: number };
}

/** A request as it arrived: headers as Node gives them (lower-case names). */
export interface RecordedRequest {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  readonly query: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface FaultCounts {
  /** Requests received, by method (upper case). */
  readonly methods: Record<string, number>;
  /** Firings, by rule name. */
  readonly rules: Record<string, number>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`, to use as the S3 endpoint. */
  readonly endpoint: string;
  readonly counts: FaultCounts;
  setLatency(ms: number): void;
  /** Adds a rule at the end of the list; returns its name (the key of counts.rules). */
  addRule(rule: FaultRule): string;
  /** Removes every rule (counts are kept). */
  clearRules(): void;
  /** Requests received with this method (all methods when omitted). */
  requests(method?: string): number;
  /** Times the named rule fired. */
  fired(name: string): number;
  resetCounts(): void;
  /** Requests received so far (with `record` only; [] otherwise), optionally of one method. */
  recorded(method?: string): readonly RecordedRequest[];
  stop(): Promise<void>;
}

interface LiveRule {
  readonly name: string;
  readonly method: string | undefined;
  readonly key: RegExp | undefined;
  readonly query: RegExp | undefined;
  readonly action: FaultAction;
  left: number;
}

interface RequestInfo {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  /** No subresource in the query (only the SDK's `x-id`): a plain object operation. */
  readonly plain: boolean;
  readonly query: URLSearchParams;
}

/** A stored object version: what a GET of it answers. */
interface Version {
  readonly headers: Record<string, string>;
  readonly chunks: Buffer[];
  readonly size: number;
}
/** null: absent; undefined: unknown. */
type VersionState = Version | null | undefined;
interface HistoryEntry {
  prev: VersionState;
  cur: VersionState;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'expect'];
const DEFAULT_CODES: Record<number, [string, string]> = {
  400: ['InvalidRequest', 'Invalid Request'],
  403: ['AccessDenied', 'Access Denied'],
  404: ['NoSuchKey', 'The specified key does not exist.'],
  409: ['OperationAborted', 'A conflicting conditional operation is currently in progress against this resource.'],
  412: ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'],
  429: ['TooManyRequests', 'Please reduce your request rate.'],
  500: ['InternalError', 'We encountered an internal error. Please try again.'],
  503: ['SlowDown', 'Please reduce your request rate.'],
};
const MESSAGES: Record<string, string> = {
  InvalidAccessKeyId: 'The AWS Access Key Id you provided does not exist in our records.',
  NoSuchBucket: 'The specified bucket does not exist',
  ServiceUnavailable: 'Service is unable to handle request.',
};
/** Headers of a PUT that a later GET of the object answers with. */
const STORED_HEADERS = ['content-type', 'cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires'];
const MAX_DELETE_BODY = 4 * 1024 * 1024;

export async function startFaultProxy(target: string, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
  const proxy = new FaultProxyServer(new URL(target), opts);
  await proxy.listen();
  return proxy;
}

class FaultProxyServer implements FaultProxy {
  endpoint = '';
  readonly counts: FaultCounts = { methods: {}, rules: {} };
  #target: URL;
  #client: typeof http | typeof https;
  #agent: http.Agent;
  #server: http.Server;
  #sockets = new Set<Socket>();
  #held = new Set<() => void>();
  #rules: LiveRule[] = [];
  #ruleSeq = 0;
  #latencyMs: number;
  #history: History | undefined;
  #stopped: Promise<void> | undefined;
  #recorded: RecordedRequest[] = [];
  #recordMax: number;

  constructor(target: URL, opts: FaultProxyOptions) {
    this.#target = target;
    this.#recordMax = opts.record ? (typeof opts.record === 'object' ? (opts.record.max ?? 10_000) : 10_000) : 0;
    this.#latencyMs = checkMs(opts.latencyMs ?? 0);
    this.#client = target.protocol === 'https:' ? https : http;
    // timeout: idle upstream sockets are dropped after 3 s, before the target's own
    // keep-alive timeout (5 s for Node servers such as s3rver) can close one under a
    // request (that race would surface as a spurious 502). Busy sockets are not affected.
    const agentOpts = { keepAlive: true, maxFreeSockets: 256, noDelay: true, scheduling: 'lifo' as const, timeout: 3000 };
    this.#agent = target.protocol === 'https:' ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
    this.#history = opts.history === false ? undefined : new History(opts.history ?? {});
    // requestTimeout 0: a held request must not be cut by the server itself. A long
    // keep-alive so an idle client socket is never closed under a client about to reuse it.
    this.#server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 65_000, noDelay: true }, (req, res) => this.#onRequest(req, res));
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    // A client that vanishes mid-request is not our error.
    this.#server.on('clientError', (_err, s: Socket) => s.destroy());
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = this.#server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${addr.port}`;
  }

  setLatency(ms: number): void {
    this.#latencyMs = checkMs(ms);
  }

  addRule(rule: FaultRule): string {
    const times = rule.times ?? 1;
    if (!(times >= 0)) throw new TypeError(`rule times must be >= 0, got ${times}`);
    checkAction(rule.action);
    const name = rule.name ?? `#${++this.#ruleSeq} ${describeAction(rule.action)}`;
    // A /g or /y regexp is stateful under test(): keep a stateless copy.
    const key = rule.key ? new RegExp(rule.key.source, rule.key.flags.replace(/[gy]/g, '')) : undefined;
    const query = rule.query ? new RegExp(rule.query.source, rule.query.flags.replace(/[gy]/g, '')) : undefined;
    this.#rules.push({ name, method: rule.method?.toUpperCase(), key, query, action: rule.action, left: times });
    this.counts.rules[name] ??= 0;
    return name;
  }

  clearRules(): void {
    this.#rules = [];
  }

  requests(method?: string): number {
    if (method === undefined) return Object.values(this.counts.methods).reduce((a, b) => a + b, 0);
    return this.counts.methods[method.toUpperCase()] ?? 0;
  }

  fired(name: string): number {
    return this.counts.rules[name] ?? 0;
  }

  resetCounts(): void {
    for (const k of Object.keys(this.counts.methods)) delete this.counts.methods[k];
    for (const k of Object.keys(this.counts.rules)) this.counts.rules[k] = 0;
    this.#recorded = [];
  }

  recorded(method?: string): readonly RecordedRequest[] {
    return method === undefined ? [...this.#recorded] : this.#recorded.filter((r) => r.method === method.toUpperCase());
  }

  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      for (const cancel of this.#held) cancel();
      this.#held.clear();
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const s of this.#sockets) s.destroy();
      this.#agent.destroy();
      await closed;
    })();
    return this.#stopped;
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const info = parseRequest(req);
    this.counts.methods[info.method] = (this.counts.methods[info.method] ?? 0) + 1;
    if (this.#recordMax > 0) {
      if (this.#recorded.length >= this.#recordMax) this.#recorded.shift();
      this.#recorded.push({ method: info.method, bucket: info.bucket, key: info.key, query: info.query.toString(), headers: { ...req.headers } });
    }
    const rule = this.#take(info);
    const action = rule?.action;
    const delay = typeof action === 'object' && 'delay' in action ? action : undefined;
    const wait = this.#latencyMs + (delay?.delay ?? 0);
    if (wait <= 0) {
      this.#act(action, req, res, info, undefined);
      return;
    }
    // A delay rule reads the body while holding: a paused socket would never see the
    // client hang up. The plain latency leaves it unread (streamed later).
    const early: Buffer[] | undefined = delay ? [] : undefined;
    const onData = (c: Buffer): void => void early?.push(c);
    if (early) req.on('data', onData);
    const cancel = (): void => {
      clearTimeout(timer);
      this.#held.delete(cancel);
    };
    const timer = setTimeout(() => {
      this.#held.delete(cancel);
      if (early) {
        req.removeListener('data', onData);
        req.pause();
      }
      const connected = !res.destroyed && !req.socket.destroyed;
      if (connected || (delay?.forwardAbandoned === true && req.complete)) this.#act(action, req, res, info, early);
    }, wait);
    this.#held.add(cancel);
    // Unless the abandoned request must still land, a hang-up ends the hold.
    if (delay?.forwardAbandoned !== true) res.once('close', cancel);
  }

  /** The rule this request takes, consumed and counted; undefined when none matches. */
  #take(info: RequestInfo): LiveRule | undefined {
    for (const r of this.#rules) {
      if (r.left <= 0) continue;
      if (r.method !== undefined && r.method !== info.method) continue;
      if (r.key !== undefined && !r.key.test(info.key)) continue;
      if (r.query !== undefined && !r.query.test(info.query.toString())) continue;
      if (r.action === 'stale' && !this.#canStale(info)) continue;
      r.left--;
      this.counts.rules[r.name] = (this.counts.rules[r.name] ?? 0) + 1;
      return r;
    }
    return undefined;
  }

  #canStale(info: RequestInfo): boolean {
    if ((info.method !== 'GET' && info.method !== 'HEAD') || !info.plain || info.key === '') return false;
    const entry = this.#history?.get(info.bucket, info.key);
    return entry !== undefined && entry.prev !== undefined;
  }

  #act(action: FaultAction | undefined, req: http.IncomingMessage, res: http.ServerResponse, info: RequestInfo, early: Buffer[] | undefined): void {
    if (action === undefined || (typeof action === 'object' && 'delay' in action)) {
      this.#forward(req, res, info, undefined, early);
    } else if (action === 'reset') {
      req.socket.resetAndDestroy();
    } else if (action === 'stale') {
      this.#serveStale(req, res, info);
    } else if (action === 'corrupt') {
      this.#forward(req, res, info, { corrupt: { at: 0, length: 1 } });
    } else if ('status' in action) {
      const [defCode, defMessage] = DEFAULT_CODES[action.status] ?? ['InternalError', 'Injected error'];
      const code = action.code ?? defCode;
      sendError(req, res, action.status, code, action.message ?? MESSAGES[code] ?? defMessage, info);
    } else {
      this.#forward(req, res, info, action);
    }
  }

  #forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    info: RequestInfo,
    fault: { readonly truncate: number } | { readonly corrupt: { readonly at: number; readonly length?: number } } | undefined,
    early: readonly Buffer[] = [],
  ): void {
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    const upReq = this.#client.request({
      protocol: this.#target.protocol,
      hostname: this.#target.hostname,
      port: this.#target.port,
      method: info.method,
      path: req.url,
      headers,
      agent: this.#agent,
    });
    const record = this.#history?.recorder(req, info, early);
    upReq.on('response', (upRes) => {
      const status = upRes.statusCode ?? 502;
      record?.(status, upRes.headers);
      if (res.destroyed) {
        // An abandoned request that was forwarded anyway: nobody to answer.
        upRes.resume();
        return;
      }
      const out: http.OutgoingHttpHeaders = { ...upRes.headers };
      delete out['connection'];
      delete out['keep-alive'];
      res.writeHead(status, upRes.statusMessage, out);
      if (fault !== undefined && 'truncate' in fault) {
        truncate(upRes, res, fault.truncate);
        return;
      }
      // The target dying mid-body: the client must see a cut body too, not a hang.
      upRes.on('close', () => {
        if (!upRes.complete) res.destroy();
      });
      if (fault === undefined) upRes.pipe(res);
      else upRes.pipe(new Corrupter(fault.corrupt.at, fault.corrupt.length ?? 1)).pipe(res);
    });
    upReq.on('error', (err) => {
      if (res.destroyed) return;
      if (!res.headersSent) sendError(req, res, 502, 'BadGateway', `fault proxy: ${err.message}`, info);
      else res.destroy();
    });
    if (!res.destroyed) {
      res.once('close', () => {
        if (!res.writableFinished) upReq.destroy();
      });
    }
    // Body bytes read while the request was held go first, then the rest is piped.
    for (const c of early) upReq.write(c);
    if (req.readableEnded) upReq.end();
    else req.pipe(upReq);
  }

  #serveStale(req: http.IncomingMessage, res: http.ServerResponse, info: RequestInfo): void {
    req.resume();
    const prev = this.#history?.get(info.bucket, info.key)?.prev;
    if (prev === undefined) {
      // Forgotten while the request was held: nothing to emulate.
      this.#forward(req, res, info, undefined);
      return;
    }
    if (prev === null) {
      sendError(req, res, 404, 'NoSuchKey', 'The specified key does not exist.', info);
      return;
    }
    let start = 0;
    let end = prev.size - 1;
    let status = 200;
    const headers: Record<string, string | number> = { ...prev.headers, 'x-amz-request-id': requestId() };
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && (range[1] !== '' || range[2] !== '')) {
      if (range[1] === '') {
        start = Math.max(0, prev.size - Number(range[2]));
      } else {
        start = Number(range[1]);
        if (range[2] !== '') end = Math.min(end, Number(range[2]));
      }
      if (start >= prev.size || start > end) {
        sendError(req, res, 416, 'InvalidRange', 'The requested range is not satisfiable', info);
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${prev.size}`;
    }
    headers['content-length'] = end - start + 1;
    res.writeHead(status, headers);
    if (info.method === 'HEAD') res.end();
    else res.end(Buffer.concat(prev.chunks, prev.size).subarray(start, end + 1));
  }
}

/** Keeps, per tracked key, the current and previous versions; LRU-bounded. */
class History {
  #keys: RegExp | undefined;
  #maxKeys: number;
  #maxBytes: number;
  #bytes = 0;
  /** Map order is write order: the first entry is the least recently written. */
  #entries = new Map<string, HistoryEntry>();

  constructor(opts: HistoryOptions) {
    this.#keys = opts.keys ? new RegExp(opts.keys.source, opts.keys.flags.replace(/[gy]/g, '')) : undefined;
    this.#maxKeys = opts.maxKeys ?? 256;
    this.#maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
  }

  get(bucket: string, key: string): HistoryEntry | undefined {
    return this.#entries.get(`${bucket}/${key}`);
  }

  /**
   * For a request that may change a tracked object, starts recording what is needed
   * and returns the callback to run on the target's answer; otherwise undefined.
   */
  recorder(
    req: http.IncomingMessage,
    info: RequestInfo,
    early: readonly Buffer[],
  ): ((status: number, headers: http.IncomingHttpHeaders) => void) | undefined {
    if (info.method === 'POST' && info.key === '' && info.query.has('delete')) return this.#recordDeleteMany(req, info.bucket, early);
    if (!info.plain || info.key === '' || !this.#tracked(info.key)) return undefined;
    if (info.method === 'DELETE') {
      return (status) => {
        if (ok(status)) this.#write(info.bucket, info.key, null);
      };
    }
    if (info.method !== 'PUT') return undefined;
    if (req.headers['x-amz-copy-source'] !== undefined) {
      return (status) => {
        if (ok(status)) this.#write(info.bucket, info.key, undefined);
      };
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    const take = (c: Buffer): void => {
      if (tooBig) return;
      size += c.length;
      if (size > this.#maxBytes) {
        tooBig = true;
        chunks.length = 0;
      } else {
        chunks.push(c);
      }
    };
    for (const c of early) take(c);
    req.on('data', take);
    return (status, resHeaders) => {
      if (!ok(status)) return;
      // A 2xx before the whole body arrived cannot be replayed faithfully.
      if (tooBig || !req.complete) {
        this.#write(info.bucket, info.key, undefined);
        return;
      }
      const headers: Record<string, string> = { 'content-type': 'binary/octet-stream', 'accept-ranges': 'bytes' };
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === 'string' && (STORED_HEADERS.includes(name) || name.startsWith('x-amz-meta-'))) headers[name] = value;
      }
      const etag = resHeaders.etag;
      if (typeof etag === 'string') headers.etag = etag;
      const date = resHeaders.date ? new Date(resHeaders.date) : new Date();
      headers['last-modified'] = (Number.isNaN(date.getTime()) ? new Date() : date).toUTCString();
      this.#write(info.bucket, info.key, { headers, chunks, size });
    };
  }

  #recordDeleteMany(req: http.IncomingMessage, bucket: string, early: readonly Buffer[]): (status: number) => void {
    const chunks: Buffer[] = [];
    let size = 0;
    const take = (c: Buffer): void => {
      size += c.length;
      if (size <= MAX_DELETE_BODY) chunks.push(c);
    };
    for (const c of early) take(c);
    req.on('data', take);
    return (status) => {
      if (!ok(status) || size > MAX_DELETE_BODY) return;
      // Every key asked for counts as deleted (Quiet mode answers only failures; s3rver has none).
      const xml = Buffer.concat(chunks).toString('utf8');
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) {
        const key = unescapeXml(m[1] ?? '');
        if (this.#tracked(key)) this.#write(bucket, key, null);
      }
    };
  }

  #tracked(key: string): boolean {
    return this.#keys === undefined || this.#keys.test(key);
  }

  #write(bucket: string, key: string, next: VersionState): void {
    const id = `${bucket}/${key}`;
    const entry = this.#entries.get(id) ?? { prev: undefined, cur: null };
    this.#entries.delete(id);
    this.#bytes -= sizeOf(entry.prev);
    entry.prev = entry.cur;
    entry.cur = next;
    this.#bytes += sizeOf(next);
    this.#entries.set(id, entry);
    // Evict least recently written keys, never the one just written unless it alone is too big.
    for (const [oldId, old] of this.#entries) {
      if (this.#entries.size <= this.#maxKeys && this.#bytes <= this.#maxBytes) break;
      if (oldId === id && this.#entries.size === 1) {
        if (this.#bytes > this.#maxBytes) {
          this.#entries.delete(id);
          this.#bytes = 0;
        }
        break;
      }
      this.#entries.delete(oldId);
      this.#bytes -= sizeOf(old.prev) + sizeOf(old.cur);
    }
  }
}

function sizeOf(v: VersionState): number {
  return v ? v.size : 0;
}

/** Flips (XOR 0xff) `length` bytes from body offset `at`. */
class Corrupter extends Transform {
  #pos = 0;
  #from: number;
  #to: number;
  constructor(at: number, length: number) {
    super();
    this.#from = at;
    this.#to = at + length;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const start = this.#pos;
    this.#pos += chunk.length;
    if (this.#pos <= this.#from || start >= this.#to) {
      done(null, chunk);
      return;
    }
    const copy = Buffer.from(chunk);
    for (let i = Math.max(this.#from, start); i < Math.min(this.#to, this.#pos); i++) copy[i - start] = (copy[i - start] ?? 0) ^ 0xff;
    done(null, copy);
  }
}

/** Sends the first `n` body bytes, then closes the client's connection. */
function truncate(upRes: http.IncomingMessage, res: http.ServerResponse, n: number): void {
  let sent = 0;
  let cut = false;
  const cutNow = (): void => {
    if (cut) return;
    cut = true;
    upRes.destroy();
    // end(): FIN once what was written is flushed, so the client gets exactly n bytes.
    const s = res.socket;
    if (s) s.end(() => s.destroy());
    else res.destroy();
  };
  if (n <= 0) {
    res.flushHeaders();
    cutNow();
    return;
  }
  upRes.on('data', (chunk: Buffer) => {
    if (cut) return;
    const room = n - sent;
    if (chunk.length >= room) {
      sent = n;
      res.write(chunk.subarray(0, room));
      cutNow();
      return;
    }
    sent += chunk.length;
    if (!res.write(chunk)) {
      upRes.pause();
      res.once('drain', () => upRes.resume());
    }
  });
  // A body no longer than n goes out whole.
  upRes.on('end', () => {
    if (!cut) res.end();
  });
  upRes.on('close', () => {
    if (!cut && !upRes.complete) res.destroy();
  });
}

function sendError(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string, info: RequestInfo): void {
  req.resume(); // drain an unread body so the connection stays usable
  const id = requestId();
  const resource = info.key === '' ? `/${info.bucket}` : `/${info.bucket}/${info.key}`;
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message>` +
      `<Resource>${escapeXml(resource)}</Resource><RequestId>${id}</RequestId></Error>`,
  );
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': body.length, 'x-amz-request-id': id });
  if (info.method === 'HEAD') res.end();
  else res.end(body);
}

function parseRequest(req: http.IncomingMessage): RequestInfo {
  const url = new URL(req.url ?? '/', 'http://proxy.invalid');
  const path = url.pathname;
  const slash = path.indexOf('/', 1);
  const bucket = decode(slash < 0 ? path.slice(1) : path.slice(1, slash));
  const key = slash < 0 ? '' : decode(path.slice(slash + 1));
  const plain = [...url.searchParams.keys()].every((k) => k === 'x-id');
  return { method: (req.method ?? 'GET').toUpperCase(), bucket, key, plain, query: url.searchParams };
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function ok(status: number): boolean {
  return status >= 200 && status < 300;
}

function requestId(): string {
  return randomBytes(8).toString('hex').toUpperCase();
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e] ?? '';
  });
}

function describeAction(a: FaultAction): string {
  if (typeof a === 'string') return a;
  if ('status' in a) return `status ${a.status}${a.code ? ` ${a.code}` : ''}`;
  if ('truncate' in a) return `truncate ${a.truncate}`;
  if ('delay' in a) return `delay ${a.delay}${a.forwardAbandoned ? ' forwardAbandoned' : ''}`;
  return `corrupt ${a.corrupt.at}+${a.corrupt.length ?? 1}`;
}

function checkAction(a: FaultAction): void {
  if (typeof a === 'string') {
    if (a !== 'reset' && a !== 'corrupt' && a !== 'stale') throw new TypeError(`unknown fault action "${String(a)}"`);
    return;
  }
  if ('status' in a) {
    if (!Number.isInteger(a.status) || a.status < 100 || a.status > 599) throw new TypeError(`bad status ${a.status}`);
  } else if ('truncate' in a) {
    if (!(a.truncate >= 0)) throw new TypeError(`bad truncate ${a.truncate}`);
  } else if ('delay' in a) {
    checkMs(a.delay);
  } else if ('corrupt' in a) {
    if (!(a.corrupt.at >= 0) || !((a.corrupt.length ?? 1) >= 1)) throw new TypeError('bad corrupt range');
  } else {
    throw new TypeError(`unknown fault action ${JSON.stringify(a)}`);
  }
}

function checkMs(ms: number): number {
  if (!(ms >= 0) || !Number.isFinite(ms)) throw new TypeError(`a delay must be a finite number of ms >= 0, got ${ms}`);
  return ms;
}
