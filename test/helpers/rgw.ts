// A throwaway single-node Ceph cluster serving S3 (RGW) on 127.0.0.1, for tests
// that must run against a server which verifies signatures, payload hashes and
// conditional writes (DESIGN §6). One mon, one OSD on memstore (data in RAM,
// bounded by memstoreBytes), radosgw with the beast frontend; no mgr.
//
// States: starting -> running -> stopped. Everything (config, keyring, mon
// store, logs, sockets) lives under one temporary folder; the daemons run in the
// foreground (-f) as our children and are recorded by pid.
// Invariants:
// - stop() SIGKILLs exactly the recorded pids and removes the folder; it is
//   idempotent. A failed start does the same before it throws.
// - While a cluster runs, process exit and SIGINT/SIGTERM also kill its pids and
//   remove its folder (synchronously), so an interrupted test run leaves nothing.
// - The S3 user's access key and secret are random for each cluster.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, openSync, closeSync, readFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';

export interface Rgw {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
  readonly bucket: string;
  /** The cluster's folder (config, keyring, logs). */
  readonly dir: string;
  readonly pids: readonly number[];
  /** S3Z_TEST_* and AWS_* variables that point startS3() (test/helpers/s3.ts) at this server. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

export interface RgwOptions {
  /** memstore_device_bytes: the most data the OSD keeps in RAM; default 8 GiB. */
  readonly memstoreBytes?: number;
  /** Bucket created for the tests; default `s3z-test`. */
  readonly bucket?: string;
  /** Give up starting after this long; default 60 s. */
  readonly timeoutMs?: number;
  /**
   * Storage classes added to the default placement before radosgw starts (RGW refuses
   * any but STANDARD otherwise, with 400 InvalidArgument); listed in env S3Z_TEST_RGW_CLASSES.
   */
  readonly storageClasses?: readonly string[];
}

/** What scripts/test.js asks for: the classes the storage tests write in. */
export const TEST_STORAGE_CLASSES = ['STANDARD_IA', 'GLACIER_IR'];
/** The key RGW's "testing" KMS backend knows, for SSE-KMS tests (not a secret: a throwaway cluster's). */
export const TEST_KMS_KEY_ID = 'testkey-1';

const TOOLS = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph-authtool', 'ceph'];

/** The Ceph binaries this helper needs that are not on PATH ([] when all are there). */
export function missingRgwTools(): string[] {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  return TOOLS.filter((t) => !dirs.some((d) => d !== '' && existsSync(path.join(d, t))));
}

/** Clusters still running in this process, for the exit and signal handlers. */
const live = new Set<Cluster>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.killNow();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      for (const c of live) c.killNow();
      // Alone, re-raise with the default action so the exit status says what
      // happened; otherwise whoever else listens (scripts/test.js) decides.
      if (process.listenerCount(sig) > 1) return;
      process.removeAllListeners(sig);
      process.kill(process.pid, sig);
    });
  }
}

class Cluster {
  readonly dir: string;
  readonly children: ChildProcess[] = [];
  #dead = false;

  constructor(dir: string) {
    this.dir = dir;
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /** Synchronous, so it also works in an exit handler. */
  killNow(): void {
    if (this.#dead) return;
    this.#dead = true;
    live.delete(this);
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    const exits = this.children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => new Promise((r) => c.once('exit', r)));
    this.killNow();
    // The kernel frees the memstore RAM once the OSD has really exited.
    await Promise.race([Promise.all(exits), sleep(5000)]);
  }

  /** Kills one daemon (to start it again) and forgets its pid. */
  async replace(child: ChildProcess): Promise<void> {
    const gone = child.exitCode === null && child.signalCode === null ? new Promise((r) => child.once('exit', r)) : Promise.resolve();
    child.kill('SIGKILL');
    await gone;
    this.children.splice(this.children.indexOf(child), 1);
  }

  daemon(cmd: string, args: string[], log: string): ChildProcess {
    const fd = openSync(path.join(this.dir, 'log', log), 'a');
    try {
      const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
      child.on('error', () => {});
      this.children.push(child);
      return child;
    } finally {
      closeSync(fd);
    }
  }

  /** A tail of every log, for an error message. */
  logs(): string {
    let out = '';
    for (const name of ['mon.a.log', 'osd.0.log', 'client.rgw.log', 'mon.out', 'osd.out', 'rgw.out']) {
      const f = path.join(this.dir, 'log', name);
      if (!existsSync(f)) continue;
      const lines = readFileSync(f, 'utf8').trimEnd().split('\n');
      out += `\n--- ${name}\n${lines.slice(-15).join('\n')}`;
    }
    return out;
  }
}

export async function startRgw(opts: RgwOptions = {}): Promise<Rgw> {
  const missing = missingRgwTools();
  if (missing.length > 0) throw new Error(`Ceph RGW is not installed (missing ${missing.join(', ')}): run scripts/install-deps.sh`);
  installHandlers();
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const cluster = new Cluster(mkdtempSync(path.join(tmpdir(), 's3z-rgw-')));
  live.add(cluster);
  try {
    return await boot(cluster, opts, deadline);
  } catch (err) {
    const logs = cluster.logs();
    await cluster.stop();
    throw new Error(`RGW did not start: ${err instanceof Error ? err.message : String(err)}${logs}`, { cause: err });
  }
}

async function boot(cluster: Cluster, opts: RgwOptions, deadline: number): Promise<Rgw> {
  const dir = cluster.dir;
  for (const sub of ['mon', 'osd', 'run', 'log', 'rgw', 'crash']) mkdirSync(path.join(dir, sub));
  const [monPort, rgwPort] = await freePorts(2);
  const fsid = randomUUID();
  const conf = path.join(dir, 'ceph.conf');
  const keyring = path.join(dir, 'keyring');
  writeFileSync(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon_host = v2:127.0.0.1:${monPort}`,
      'ms_bind_msgr1 = false',
      'public_addr = 127.0.0.1',
      // cephx stays on: with auth none, Pacific daemons race the monmap ("wrong fsid").
      'auth_cluster_required = cephx',
      'auth_service_required = cephx',
      'auth_client_required = cephx',
      `keyring = ${keyring}`,
      `run_dir = ${dir}/run`,
      `admin_socket = ${dir}/run/$name.asok`,
      `pid_file = ${dir}/run/$name.pid`,
      `log_file = ${dir}/log/$name.log`,
      `crash_dir = ${dir}/crash`,
      `mon_data = ${dir}/mon`,
      `osd_data = ${dir}/osd`,
      'osd_objectstore = memstore',
      `memstore_device_bytes = ${opts.memstoreBytes ?? 8 * 1024 ** 3}`,
      'osd_pool_default_size = 1',
      'osd_pool_default_min_size = 1',
      'mon_allow_pool_size_one = true',
      'mon_warn_on_pool_no_redundancy = false',
      'osd_pool_default_pg_num = 8',
      'osd_pool_default_pgp_num = 8',
      'osd_crush_chooseleaf_type = 0',
      // The default 1 s makes every map change (pool creation...) wait: 12 s start-up instead of 2.
      'paxos_propose_interval = 0.01',
      `rgw_data = ${dir}/rgw`,
      `rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}`,
      'rgw_enable_usage_log = false',
      // SSE over plain HTTP (tests only), and SSE-KMS from a fixed in-config key.
      'rgw_crypt_require_ssl = false',
      'rgw_crypt_s3_kms_backend = testing',
      `rgw_crypt_s3_kms_encryption_keys = ${TEST_KMS_KEY_ID}=${randomBytes(32).toString('base64')}`,
      '',
    ].join('\n'),
  );
  const c = ['-c', conf];
  await tool('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], deadline);
  await tool('ceph-authtool', [keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *'], deadline);
  await tool('ceph-authtool', [keyring, '--gen-key', '-n', 'osd.0', '--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow profile osd'], deadline);
  await tool('ceph-authtool', [keyring, '--gen-key', '-n', 'client.rgw', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx'], deadline);
  await tool('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, path.join(dir, 'monmap')], deadline);
  await tool('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap'), '--keyring', keyring], deadline);
  cluster.daemon('ceph-mon', [...c, '-f', '-i', 'a'], 'mon.out');

  const osdUuid = randomUUID();
  await tool('ceph', [...c, '--connect-timeout', '30', 'osd', 'new', osdUuid, '0'], deadline);
  await tool('ceph-osd', [...c, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], deadline);
  cluster.daemon('ceph-osd', [...c, '-f', '-i', '0'], 'osd.out');
  let gateway = cluster.daemon('radosgw', [...c, '-f', '-n', 'client.rgw'], 'rgw.out');

  const endpoint = `http://127.0.0.1:${rgwPort}`;
  const waitForGateway = async () => {
    while (!(await answers(endpoint))) {
      if (Date.now() > deadline) throw new Error(`radosgw did not answer on ${endpoint}`);
      for (const child of cluster.children) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${child.spawnargs[0]} exited (${child.exitCode ?? child.signalCode})`);
      }
      await sleep(50);
    }
  };
  await waitForGateway();
  if ((opts.storageClasses ?? []).length > 0) {
    // The zone exists once radosgw has made it, and radosgw reads its placement only at start: add, then restart it.
    for (const cls of opts.storageClasses ?? []) {
      await tool('radosgw-admin', [...c, 'zonegroup', 'placement', 'add', '--rgw-zonegroup', 'default', '--placement-id', 'default-placement', '--storage-class', cls], deadline);
      await tool('radosgw-admin', [...c, 'zone', 'placement', 'add', '--rgw-zone', 'default', '--placement-id', 'default-placement', '--storage-class', cls, '--data-pool', `default.rgw.${cls.toLowerCase()}.data`], deadline);
    }
    await cluster.replace(gateway);
    gateway = cluster.daemon('radosgw', [...c, '-f', '-n', 'client.rgw'], 'rgw.out');
    await waitForGateway();
  }

  const accessKeyId = randomBytes(10).toString('hex').toUpperCase();
  const secretAccessKey = randomBytes(30).toString('base64url');
  await tool('radosgw-admin', [...c, 'user', 'create', '--uid', 's3z-test', '--display-name', 's3z tests', '--access-key', accessKeyId, '--secret', secretAccessKey], deadline);
  const bucket = opts.bucket ?? 's3z-test';
  const region = 'us-east-1';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
  try {
    // radosgw-admin writes the user through RADOS; the gateway may need a moment to see it.
    for (;;) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  } finally {
    client.destroy();
  }

  const env = {
    S3Z_TEST_BACKEND: 'rgw',
    S3Z_TEST_ENDPOINT: endpoint,
    S3Z_TEST_BUCKET: bucket,
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_REGION: region,
    S3Z_TEST_RGW_CLASSES: (opts.storageClasses ?? []).join(','),
  };
  return { endpoint, accessKeyId, secretAccessKey, region, bucket, dir, pids: cluster.pids, env, stop: () => cluster.stop() };
}

function tool(cmd: string, args: string[], deadline: number): Promise<string> {
  const timeout = Math.max(1000, deadline - Date.now());
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.filter((a) => a !== '-c' && !a.endsWith('ceph.conf')).slice(0, 4).join(' ')}: ${err.message.split('\n')[0]} ${stderr.trim().slice(-500)}`));
      else resolve(stdout);
    });
  });
}

/** Any HTTP answer at all (radosgw answers an anonymous GET / with 200). */
function answers(endpoint: string): Promise<boolean> {
  const url = new URL(endpoint);
  return new Promise((resolve) => {
    const s = net.connect(Number(url.port), url.hostname);
    s.setTimeout(1000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Ports free right now (listen on 0, close); another process may still take one, which the start then reports. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
