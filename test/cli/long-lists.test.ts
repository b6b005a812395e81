// The commands that walk a volume's whole LIST (status, verify, erase), on a volume
// whose LIST takes two pages, through a proxy that records the requests:
// - verify and erase start on the LIST's first page while the rest is listed in the
//   background, and show the progress display (plain lines off a terminal, with the
//   totals once the LIST is done; nothing with --quiet, or with --json for verify);
// - status, on a terminal (a pty from util-linux's `script`), says that it is still
//   listing when the LIST takes more than a second, and erases that line before its table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pMap from 'p-map';
import { parseS3Url } from '../../dist/s3/url.js';
import type { S3Bucket } from '../../dist/s3/bucket.js';
import { S3BlockStore } from '../../dist/store/s3-store.js';
import { BlockKeys } from '../../dist/volume/keys.js';
import { silentLogger } from '../../dist/log.js';
import { startS3, testBucket, type TestS3 } from '../helpers/s3.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/until.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const BS = 4096;
const HOLD_MS = 3000;
/** More than one LIST page (1000 keys). */
const STORED = 1100;

let s3: TestS3;
let proxy: FaultProxy;
let bucket: S3Bucket;

before(async () => {
  s3 = await startS3();
  proxy = await startFaultProxy(s3.endpoint, { record: true });
  bucket = testBucket(s3);
});
after(async () => {
  bucket?.destroy();
  await proxy?.stop();
  await s3?.stop();
});

const cli = (...args: string[]) => runCli(args, { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint });

/** A volume of 2048 blocks of 4 KiB with its first STORED blocks stored. */
async function volume(): Promise<{ url: string; keys: BlockKeys }> {
  const url = s3.url('pages');
  const c = await cli('create', url, '--size', String(2048 * BS), '--block-size', String(BS));
  assert.equal(c.code, 0, c.stderr);
  const keys = new BlockKeys(parseS3Url(url));
  const store = new S3BlockStore({ blockSize: BS, blockCount: 2048, readOnly: false }, bucket, keys, silentLogger);
  await pMap(Array.from({ length: STORED }, (_, i) => i), (i) => store.write(i, Buffer.alloc(BS, (i % 251) + 1)), { concurrency: 16 });
  return { url, keys };
}

/** Where each LIST of the blocks and each block GET came, in arrival order. */
function arrivals(keys: BlockKeys): { lists: number[]; blockGets: number[] } {
  const lists: number[] = [];
  const blockGets: number[] = [];
  proxy.recorded('GET').forEach((r, i) => {
    if (r.key === '' && new URLSearchParams(r.query).get('prefix') === keys.prefix) lists.push(i);
    else if (r.key.startsWith(keys.prefix)) blockGets.push(i);
  });
  return { lists, blockGets };
}

test('verify checks from the first LIST page on, shows its progress, and says nothing with --quiet or --json', async () => {
  const { url, keys } = await volume();
  proxy.resetCounts();
  // The LIST's second page is held: the checks of the first page go on meanwhile.
  proxy.addRule({ name: 'page 2', method: 'GET', key: /^$/, query: /continuation-token/, action: { delay: HOLD_MS } });
  const run = cli('verify', url);
  await until('the LIST of page 2', () => arrivals(keys).lists.length === 2, 20_000);
  await sleep(1000);
  const whileHeld = arrivals(keys).blockGets.length;
  const v = await run;
  proxy.clearRules();
  assert.equal(proxy.fired('page 2'), 1);
  assert.ok(whileHeld > 0, 'blocks were checked while the LIST still had a page to come');
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`^${STORED} block objects checked \\(4\\.3 MiB\\), 0 bad$`, 'm'));
  const { lists, blockGets } = arrivals(keys);
  assert.equal(lists.length, 2, 'one LIST pass of two pages');
  assert.equal(blockGets.length, STORED);
  // Page 2 is asked for while page 1's blocks are checked, not after the last of them.
  assert.ok(lists[1]! < blockGets[999]!, `the second page's LIST came at ${lists[1]}, page 1's last GET at ${blockGets[999]}`);
  assert.match(v.stderr, new RegExp(`^verify: ${STORED} blocks \\(4\\.3 MiB\\) to do$`, 'm'), v.stderr);
  assert.match(v.stderr, new RegExp(`^verify: ${STORED}/${STORED} blocks, 4\\.3 MiB/4\\.3 MiB \\(100%\\), [\\d.]+ MB/s, ETA 0s$`, 'm'), v.stderr);

  const q = await cli('verify', url, '--quiet');
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stderr, '');
  const j = await cli('verify', url, '--json');
  assert.equal(j.code, 0, j.stderr);
  assert.equal(j.stderr, '');
  assert.equal((JSON.parse(j.stdout) as { checked: number }).checked, STORED);
});

test('erase deletes from the first LIST page on and shows its progress; --quiet says nothing', async () => {
  const { url, keys } = await volume();
  proxy.resetCounts();
  const e = await cli('erase', url, '--yes');
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, new RegExp(`erased .*: ${STORED} block objects and the descriptor deleted`));
  const { lists } = arrivals(keys);
  assert.equal(lists.length, 2, 'one LIST pass of two pages');
  assert.match(e.stderr, new RegExp(`^erase: ${STORED}/${STORED} blocks, 4\\.3 MiB/4\\.3 MiB \\(100%\\), [\\d.]+ MB/s, ETA 0s$`, 'm'), e.stderr);
  const s = await cli('status', url);
  assert.equal(s.code, 1);

  const again = await volume();
  const q = await cli('erase', again.url, '--yes', '--quiet');
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stderr, '');
});

/** On a pseudo-terminal: what the terminal got, stdout and stderr together. */
async function onTerminal(args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await runCli(args, { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint }, { terminal: true });
  return { code: r.code, out: r.stdout };
}

test('status on a terminal says it is still listing a slow LIST, then erases the line before its table', async () => {
  const { url } = await volume();
  // Each page of the blocks' LIST takes 1.2 s: the first comes after the notice's 1 s delay.
  proxy.addRule({ name: 'slow pages', method: 'GET', key: /^$/, query: /blocks/, times: Infinity, action: { delay: 1200 } });
  try {
    const slow = await onTerminal(['status', url]);
    assert.equal(slow.code, 0, slow.out);
    assert.match(slow.out, /\rstatus: listing the volume, 1000 blocks \(3\.9 MiB\) so far\x1b\[K\rstatus: listing the volume, 1100 blocks \(4\.3 MiB\) so far\x1b\[K/, JSON.stringify(slow.out));
    // Erased, then the table on a clean line.
    assert.match(slow.out, new RegExp(`\\r\\x1b\\[Kvolume +${url.replace(/[/.]/g, '\\$&')}`), JSON.stringify(slow.out));
    assert.match(slow.out, new RegExp(`stored +${STORED} blocks`));
  } finally {
    proxy.clearRules();
  }
  // Fast: no such line.
  const fast = await onTerminal(['status', url]);
  assert.equal(fast.code, 0, fast.out);
  assert.doesNotMatch(fast.out, /listing the volume/);
  assert.match(fast.out, new RegExp(`stored +${STORED} blocks`));
});
