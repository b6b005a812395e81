// The write lease on a real S3 server: one writer at a time, even when mounts try
// at the same instant; generations cleaned up; the legacy `lease` object read and
// migrated; renewal stops once the lease was taken; release keeps the token; a
// stale lease of a dead process on this host is taken over.
//
// S3Z_TEST_BACKEND says what server this is (s3rver by default, `rgw`, or
// `external`). Where the server honours `If-None-Match: *` (rgw must; an external
// one is probed) the races must give exactly one winner every time, and every
// loser must name it. s3rver ignores conditions, so there the lease is
// best-effort: at most one winner is all it promises, and a taker pauses before its
// read-back (a taker finds out which by sending its create twice).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { S3Bucket, DEFAULT_S3_CONFIG } from '../../dist/s3/bucket.js';
import { parseS3Url, keyUnder, type S3Location } from '../../dist/s3/url.js';
import { LeaseHolder, leaseKey, listGenerations, readLease, readLeaseObject } from '../../dist/volume/lease.js';
import { md5 } from '../../dist/store/checksum.js';
import { silentLogger } from '../../dist/log.js';
import { startS3, testBucket, type TestS3 } from '../helpers/s3.js';
import { failsWith, runCli, type CliResult } from '../helpers/cli.js';
import { forceUnmount, isMounted, mountVolume } from '../helpers/mount.js';

type Backend = 's3rver' | 'rgw' | 'external';
const BACKEND = ((): Backend => {
  const b = process.env.S3Z_TEST_BACKEND ?? (process.env.S3Z_TEST_ENDPOINT ? 'external' : 's3rver');
  if (b !== 's3rver' && b !== 'rgw' && b !== 'external') throw new Error(`S3Z_TEST_BACKEND=${b}: expected s3rver, rgw or external`);
  return b;
})();

let s3: TestS3;
let bucket: S3Bucket;
/** The server refuses a second create of one key with `If-None-Match: *`: races must have exactly one winner. */
let strict = false;

before(async () => {
  s3 = await startS3();
  bucket = testBucket(s3);
  strict = await honoursIfNoneMatch(parseS3Url(s3.url('probe')));
  // RGW honours it (DESIGN §6): if it does not here, the strict checks would prove nothing, so fail.
  if (BACKEND === 'rgw') assert.equal(strict, true, 'S3Z_TEST_BACKEND=rgw but the server accepted a second If-None-Match: * create');
});
after(async () => {
  bucket?.destroy();
  await s3?.stop();
});

async function honoursIfNoneMatch(loc: S3Location): Promise<boolean> {
  const key = keyUnder(loc, 'probe');
  const body = Buffer.from('probe');
  await bucket.put(key, body, { md5: md5(body), ifAbsent: true });
  try {
    await bucket.put(key, body, { md5: md5(body), ifAbsent: true });
    return false;
  } catch (err) {
    if ((err as { code?: string }).code === 'EVOLUMEEXISTS') return true;
    throw err;
  } finally {
    await bucket.delete(key);
  }
}

const opts = (holder: string, force = false, ttlMs = 60_000) => ({ holder, ttlMs, force, settleMs: 300 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function putLease(key: string, lease: Record<string, unknown>): Promise<void> {
  const body = Buffer.from(JSON.stringify(lease));
  await bucket.put(key, body, { md5: md5(body) });
}

test('8 takers racing, 10 rounds, each with its own client: one winner, and every loser names it', async (t) => {
  const loc = parseS3Url(s3.url('race'));
  const rounds = strict ? 10 : 3;
  const clients = Array.from({ length: 8 }, () => testBucket(s3));
  try {
    for (let round = 0; round < rounds; round++) {
      const results = await Promise.allSettled(clients.map((c, i) => LeaseHolder.acquire(c, loc, opts(`taker ${round}.${i}`), silentLogger)));
      const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error & { code?: string }] : []));
      for (const err of lost) {
        assert.equal(err.code, 'ELEASE', `round ${round}: ${err.message}`);
        assert.match(err.message, /mounted read-write by taker /, `round ${round}: a refusal names the holder`);
      }
      if (strict) {
        assert.equal(won.length, 1, `round ${round}: exactly one winner (${won.length}); refusals: ${lost.map((e) => e.message).join(' | ')}`);
        const winner = won[0] as LeaseHolder;
        const live = await readLease(bucket, loc);
        assert.equal(live?.token, winner.token);
        for (const err of lost) assert.match(err.message, new RegExp(`mounted read-write by ${escape(live.holder)}\\b`), `round ${round}: the loser names the winner`);
        assert.equal(winner.gen, round + 1, 'one generation per round');
        assert.deepEqual(await listGenerations(bucket, loc), [winner.gen], 'older generations cleaned up, no loser left one');
      } else {
        assert.ok(won.length <= 1, `round ${round}: at most one winner (${won.length})`);
        t.diagnostic(`s3rver round ${round}: ${won.length} winner(s), ${lost.length} refused`);
      }
      for (const w of won) await w.release();
    }
  } finally {
    for (const c of clients) c.destroy();
  }
});

/** A client whose first conditional create waits for `gate`: a taker that read the lease free, then stalled. */
class StalledTaker extends S3Bucket {
  #gate: Promise<unknown>;
  constructor(gate: Promise<unknown>) {
    super({ ...DEFAULT_S3_CONFIG, endpoint: s3.endpoint }, s3.bucket, silentLogger);
    this.#gate = gate;
  }
  override async put(key: string, body: Buffer, o: Parameters<S3Bucket['put']>[2]): Promise<string | undefined> {
    if (o.ifAbsent === true) await this.#gate;
    return super.put(key, body, o);
  }
}

test('the server decides: a taker that read the lease free but created its generation late is refused, naming the winner', async (t) => {
  if (!strict) {
    // s3rver overwrites the winner's generation here; only its read-back and the winner's renewal can notice.
    t.skip('the server ignores If-None-Match: *');
    return;
  }
  const loc = parseS3Url(s3.url('late'));
  let won!: (h: LeaseHolder) => void;
  const winner = new Promise<LeaseHolder>((r) => (won = r));
  const late = new StalledTaker(winner);
  try {
    // No settle pause for the late taker: only the server's 412 can stop it.
    const lateTake = LeaseHolder.acquire(late, loc, { ...opts('late'), settleMs: 0 }, silentLogger);
    await sleep(200); // the late taker has read gen 0 free and waits to create gen 1
    const a = await LeaseHolder.acquire(bucket, loc, opts('early'), silentLogger);
    won(a);
    await assert.rejects(lateTake, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ELEASE');
      assert.match(err.message, /mounted read-write by early, which took the lease at the same time/);
      return true;
    });
    assert.equal((await readLease(bucket, loc))?.token, a.token);
    assert.deepEqual(await listGenerations(bucket, loc), [1]);
    await a.release();
  } finally {
    late.destroy();
  }
});

test('the pause before the read-back is paid only where the server ignores If-None-Match: *', async () => {
  const loc = parseS3Url(s3.url('settle'));
  const settleMs = 2000;
  const t0 = performance.now();
  const h = await LeaseHolder.acquire(bucket, loc, { ...opts('settle'), settleMs }, silentLogger);
  const ms = performance.now() - t0;
  try {
    assert.equal((await readLease(bucket, loc))?.token, h.token);
    if (strict) assert.ok(ms < settleMs / 2, `the server's 412 to the second create proves the lease ours: no pause (${ms.toFixed(0)} ms)`);
    else assert.ok(ms >= settleMs, `the server ignores the condition: the pause is kept (${ms.toFixed(0)} ms)`);
  } finally {
    await h.release();
  }
});

test('each take is a new generation; older ones are deleted, the current one is kept', async () => {
  const loc = parseS3Url(s3.url('gens'));
  let previous: string | null = null;
  for (let i = 1; i <= 3; i++) {
    const h = await LeaseHolder.acquire(bucket, loc, opts(`w${i}`), silentLogger);
    assert.equal(h.gen, i);
    assert.equal(h.previousToken, previous);
    assert.deepEqual(await listGenerations(bucket, loc), [i]);
    assert.match(leaseKey(loc, i), /\/leases\/\d{12}$/);
    await h.release();
    previous = h.token;
  }
  // Stray lower generations (a cleanup that failed) are deleted by the next winner.
  await putLease(leaseKey(loc, 1), { holder: 'old', token: 'old', expires: new Date(0).toISOString() });
  const h = await LeaseHolder.acquire(bucket, loc, opts('w4'), silentLogger);
  assert.equal(h.previousToken, previous, 'the highest generation is current, not a stray');
  assert.deepEqual(await listGenerations(bucket, loc), [4]);
  await h.release();
});

test('a volume with only the legacy `lease` object: read as generation 0, then migrated', async () => {
  const loc = parseS3Url(s3.url('legacy'));
  const legacy = keyUnder(loc, 'lease');
  await putLease(legacy, { holder: 'old version', token: 't-legacy', expires: new Date(Date.now() + 60_000).toISOString(), host: 'another-host', pid: 1 });
  assert.equal((await readLease(bucket, loc))?.holder, 'old version');
  await assert.rejects(LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger), /mounted read-write by old version/);
  await putLease(legacy, { holder: 'old version', token: 't-legacy', expires: new Date(Date.now() - 1000).toISOString() });
  const h = await LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger);
  assert.equal(h.previousToken, 't-legacy', 'the zero map of the old version stays usable');
  assert.equal(h.gen, 1);
  assert.equal(await bucket.get(legacy), null, 'the legacy object is deleted');
  assert.equal((await readLease(bucket, loc))?.token, h.token);
  await h.release();
});

test('renewal keeps the lease fresh, and stops once a higher generation took it', async () => {
  const loc = parseS3Url(s3.url('renew'));
  const lines: string[] = [];
  const log = pino({ level: 'error' }, { write: (s: string) => void lines.push(s) });
  const a = await LeaseHolder.acquire(bucket, loc, opts('a', false, 3000), log);
  const first = (await readLeaseObject(bucket, loc))?.expires ?? '';
  await sleep(1500); // renewal every ttl/3 = 1 s
  const renewed = (await readLeaseObject(bucket, loc))?.expires ?? '';
  assert.ok(Date.parse(renewed) > Date.parse(first), `renewed: ${first} -> ${renewed}`);
  const b = await LeaseHolder.acquire(bucket, loc, opts('b', true, 60_000), silentLogger);
  assert.equal(b.gen, a.gen + 1);
  await sleep(2500);
  assert.deepEqual(await listGenerations(bucket, loc), [b.gen], 'a did not write its generation again');
  assert.equal((await readLeaseObject(bucket, loc))?.token, b.token);
  assert.ok(lines.some((l) => /the lease was taken by another mount/.test(l) && /"holder":"b"/.test(l)), `error logged naming b: ${lines.join('')}`);
  await a.release(); // must not touch b's lease
  assert.equal((await readLease(bucket, loc))?.token, b.token);
  await b.release();
});

test('a live lease refuses a second writer by name; --force breaks it; release keeps the token', async () => {
  const loc = parseS3Url(s3.url('live'));
  const first = await LeaseHolder.acquire(bucket, loc, opts('first writer'), silentLogger);
  await assert.rejects(LeaseHolder.acquire(bucket, loc, opts('second'), silentLogger), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ELEASE');
    assert.match(err.message, /mounted read-write by first writer/);
    return true;
  });
  const forced = await LeaseHolder.acquire(bucket, loc, opts('second', true), silentLogger);
  assert.equal(forced.previousToken, first.token);
  await first.release(); // must not clobber the lease that was taken from it
  assert.equal((await readLease(bucket, loc))?.token, forced.token);
  await forced.release();
  assert.equal(await readLease(bucket, loc), null, 'released: free');
  const left = await readLeaseObject(bucket, loc);
  assert.equal(left?.token, forced.token, 'the token stays for the next mount');
  assert.ok(Date.parse(left?.expires ?? '') <= Date.now(), 'expired');
  const next = await LeaseHolder.acquire(bucket, loc, opts('third'), silentLogger);
  assert.equal(next.previousToken, forced.token);
  await next.release();
});

test('a live lease of a dead process on this host is taken over without --force', async () => {
  const loc = parseS3Url(s3.url('dead'));
  await putLease(keyUnder(loc, 'lease'), { holder: 'crashed', token: 't-dead', expires: new Date(Date.now() + 60_000).toISOString(), host: hostname(), pid: 2 ** 22 + 12345 });
  const taken = await LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger);
  assert.equal(taken.previousToken, 't-dead');
  await taken.release();
  // The same lease on another host is live: refused.
  await putLease(leaseKey(loc, taken.gen + 1), { holder: 'elsewhere', token: 't2', expires: new Date(Date.now() + 60_000).toISOString(), host: 'another-host', pid: 2 ** 22 + 12345 });
  await assert.rejects(LeaseHolder.acquire(bucket, loc, opts('new'), silentLogger), /mounted read-write by elsewhere/);
});

const fuse = existsSync('/dev/fuse') && existsSync(path.resolve('build/Release/s3zfuse.node'));
if (process.env.CI === 'true') assert.ok(fuse, 'CI needs /dev/fuse and the built addon');

test('8 `s3zmount mount` processes on one volume: one mounts, the others exit 1 naming it', { skip: fuse ? false : 'no /dev/fuse or FUSE addon' }, async (t) => {
  const url = s3.url('mounts');
  assert.equal((await runCli(['create', url, '--size', '16M'], s3.env)).code, 0);
  const work = await mkdtemp(path.join(tmpdir(), 's3z-lease-'));
  const dirs = Array.from({ length: 8 }, (_, i) => path.join(work, `m${i}`));
  try {
    for (const d of dirs) await mkdir(d);
    const results: CliResult[] = await Promise.all(dirs.map((d, i) => runCli(['mount', url, d, '--cache-dir', path.join(work, `c${i}`)], s3.env, { timeoutMs: 90_000 })));
    const winners = dirs.filter((_, i) => results[i]?.code === 0);
    const losers = results.filter((r) => r.code !== 0);
    for (const r of losers) {
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    if (strict) {
      assert.equal(winners.length, 1, `exactly one mount (${winners.length}): ${losers.map((r) => r.stderr.trim()).join(' | ')}`);
      const dir = winners[0] as string;
      const pid = (JSON.parse(await readFile(path.join(dir, 'stats'), 'utf8')) as { pid: number }).pid;
      for (const r of losers) assert.match(r.stderr.trim(), new RegExp(`^s3zmount: .*mounted read-write by .*pid ${pid} on ${escape(dir)}\\b`));
      t.diagnostic(`a refusal: ${losers[0]?.stderr.trim() ?? ''}`);
    } else {
      assert.ok(winners.length <= 1, `at most one mount (${winners.length})`);
      for (const r of losers) assert.match(r.stderr.trim(), /^s3zmount: .*mounted read-write by .*pid \d+ on /);
      t.diagnostic(`s3rver: ${winners.length} mount(s), ${losers.length} refused`);
    }
    for (const d of winners) {
      const u = await runCli(['unmount', d], s3.env);
      assert.equal(u.code, 0, u.stderr);
    }
    assert.equal(await readLease(bucket, parseS3Url(url)), null, 'released');
  } finally {
    for (const d of dirs) if (isMounted(d)) await forceUnmount(d);
    await rm(work, { recursive: true, force: true });
  }
});

test('release keeps the token end to end: a remount with the same cache reuses its zero map', { skip: fuse ? false : 'no /dev/fuse or FUSE addon' }, async () => {
  const url = s3.url('remount');
  assert.equal((await runCli(['create', url, '--size', '16M'], s3.env)).code, 0);
  const work = await mkdtemp(path.join(tmpdir(), 's3z-lease-'));
  const dir = path.join(work, 'm');
  const cacheDir = path.join(work, 'c');
  try {
    await mkdir(dir);
    for (const expected of ['list', 'cache']) {
      const m = await mountVolume({ env: s3.env, url, dir, cacheDir });
      try {
        assert.equal(((await m.stats()) as unknown as { zeroMap: { loadedFrom: string } }).zeroMap.loadedFrom, expected);
        await m.unmount();
      } finally {
        await m.cleanup();
      }
    }
  } finally {
    if (isMounted(dir)) await forceUnmount(dir);
    await rm(work, { recursive: true, force: true });
  }
});

test('mount --force is refused while the holder runs on this host; a lease taken from elsewhere is reported at unmount', { skip: fuse ? false : 'no /dev/fuse or FUSE addon' }, async () => {
  const url = s3.url('taken');
  const loc = parseS3Url(url);
  assert.equal((await runCli(['create', url, '--size', '16M'], s3.env)).code, 0);
  const work = await mkdtemp(path.join(tmpdir(), 's3z-lease-'));
  const [dir, second] = [path.join(work, 'm'), path.join(work, 'm2')];
  try {
    await mkdir(dir);
    await mkdir(second);
    const m = await mountVolume({ env: s3.env, url, dir, cacheDir: path.join(work, 'c') });
    try {
      // That mount is not gone: --force would make two writers on one host.
      failsWith(await runCli(['mount', '--force', url, second, '--cache-dir', path.join(work, 'c2')], s3.env), 1, /mounted read-write by .* on .*\/m, which still runs on this host: unmount it first/);
      assert.ok(!isMounted(second));
      // A --force mount on another host takes the next generation.
      const top = (await listGenerations(bucket, loc)).at(-1) ?? 0;
      await putLease(leaseKey(loc, top + 1), { holder: 'bob@elsewhere pid 7 on /mnt/v', token: 't-else', expires: new Date(Date.now() + 60_000).toISOString(), host: 'another-host', pid: 7 });
      const u = await runCli(['unmount', dir], s3.env, { timeoutMs: 60_000 });
      assert.equal(u.code, 0, u.stderr);
      assert.match(u.stdout, /^unmounted /);
      assert.match(u.stderr.trim(), /^s3zmount: warning: the write lease was taken from this mount by bob@elsewhere pid 7 on \/mnt\/v \(--force\): two writers shared the volume/);
      assert.equal((await readLeaseObject(bucket, loc))?.token, 't-else', "the taker's lease is left alone");
    } finally {
      await m.cleanup();
    }
  } finally {
    for (const d of [dir, second]) if (isMounted(d)) await forceUnmount(d);
    await rm(work, { recursive: true, force: true });
  }
});
