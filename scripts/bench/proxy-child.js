// The latency proxy of the tests (dist-test/helpers/fault-proxy.js) in a process
// of its own, so that it never competes for an event loop with the benchmark's
// raw S3 client. Started with fork(): argv = [root, target, latencyMs]. Messages
// in: { id, op: 'setLatency', ms } | { id, op: 'counts' } | { id, op: 'reset' } |
// { id, op: 'stop' }; each is answered with { id, ok, value | error }. Exits when
// its parent goes away.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [root, target, latency] = process.argv.slice(2);
const { startFaultProxy } = await import(pathToFileURL(join(root, 'dist-test/helpers/fault-proxy.js')).href);
const proxy = await startFaultProxy(target, { latencyMs: Number(latency ?? 0), history: false });
// A pass-through rule on bucket-level GETs (key ''), only to count LISTs apart from object GETs.
const LIST = proxy.addRule({ name: 'list', method: 'GET', key: /^$/, times: Infinity, action: { delay: 0 } });
// And the lease's PUTs (take, probe, renew, release), to count block PUTs apart.
const LEASE_PUT = proxy.addRule({ name: 'lease-put', method: 'PUT', key: /(^|\/)leases\/\d+$/, times: Infinity, action: { delay: 0 } });

function counts() {
  const list = proxy.fired(LIST);
  return {
    get: proxy.requests('GET') - list,
    put: proxy.requests('PUT'),
    leasePut: proxy.fired(LEASE_PUT),
    delete: proxy.requests('DELETE'),
    post: proxy.requests('POST'),
    list,
    head: proxy.requests('HEAD'),
  };
}

process.on('message', async (m) => {
  try {
    let value;
    if (m.op === 'setLatency') proxy.setLatency(m.ms);
    else if (m.op === 'counts') value = counts();
    else if (m.op === 'reset') proxy.resetCounts();
    else if (m.op === 'stop') {
      await proxy.stop();
      process.send({ id: m.id, ok: true }, () => process.exit(0));
      return;
    } else throw new Error(`unknown op ${m.op}`);
    process.send({ id: m.id, ok: true, value });
  } catch (e) {
    process.send({ id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true, endpoint: proxy.endpoint });
