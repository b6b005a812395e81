// The two block devices under test, behind one shape:
//   tool.newVolume(tag, size)           -> vol (a fresh bucket each time)
//   tool.mount(vol, dir, {readOnly})    -> { device, pid, rss(), stats(), unmount() -> ms }
// unmount() resolves when the tool's process has exited, i.e. when everything
// it had accepted is in S3 (s3zmount's `unmount` uploads dirty blocks and waits
// for its daemon; s3backer keeps uploading after umount(8) returns, so we wait
// for its process to exit).
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { defer, detach, isMounted, log, pidAlive, run, runOk, sleep, startChild, vmHWM, waitFor } from './proc.js';

const MiB = 1 << 20;

/** Number of objects in a bucket (through the client; call outside a counted phase). */
export async function countObjects(s3, bucket, prefix = '') {
  let n = 0;
  let token;
  do {
    const page = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    n += page.KeyCount ?? (page.Contents ?? []).length;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return n;
}

// ---------------------------------------------------------------------------
// s3zmount

export function s3zmountTool({ root, s3, work, cpuProfDir }) {
  const cli = join(root, 'dist/cli.js');
  const nodeArgs = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
  let seq = 0;
  mkdirSync(work, { recursive: true });
  const cliRun = (args, timeoutMs = 120_000) => runOk(process.execPath, [...nodeArgs, cli, ...args], { env: s3.env, cwd: root, timeoutMs });
  return {
    name: 's3zmount',
    deviceName: 'disk',
    async newVolume(tag, size) {
      const bucket = await s3.newBucket(`z-${tag}`);
      const url = `s3://${bucket}/vol`;
      await cliRun(['create', url, '--size', size, '--block-size', '1M']);
      return { url, bucket, prefix: 'vol/', size };
    },
    /** Block objects stored (from `status --json`). */
    async blocksStored(vol) {
      const r = await cliRun(['status', vol.url, '--json']);
      return JSON.parse(r.stdout).blocksStored;
    },
    async mount(vol, dir, { readOnly = false, overlay = false } = {}) {
      mkdirSync(dir, { recursive: true });
      const cacheDir = join(work, `cache-${seq++}`);
      rmSync(cacheDir, { recursive: true, force: true });
      const args = ['mount', vol.url, dir, '--cache-dir', cacheDir, '--log-file', `${cacheDir}.log`];
      if (readOnly) args.push('--read-only');
      if (overlay) args.push('--overlay');
      const started = performance.now();
      let pid;
      // Registered before mounting: a failed or interrupted mount is cleaned up too.
      const force = defer(`s3zmount mount ${dir}`, async () => {
        if (pid !== undefined && pidAlive(pid)) {
          // a clean unmount first (uploads what is dirty), then by force
          const r = await run(process.execPath, [cli, 'unmount', dir, '--timeout', '120'], { env: s3.env, timeoutMs: 130_000 }).catch(() => null);
          if (r?.code !== 0 && pidAlive(pid)) process.kill(pid, 'SIGKILL');
          await waitFor(() => !pidAlive(pid), 10_000);
        }
        detach(dir);
      });
      try {
        await cliRun(args, 120_000);
      } catch (e) {
        await force();
        let daemonLog = '';
        try {
          daemonLog = readFileSync(`${cacheDir}.log`, 'utf8').slice(-4000);
        } catch {
          // none
        }
        throw new Error(`${e.message}\ndaemon log:\n${daemonLog}`);
      }
      const mountMs = performance.now() - started;
      const stats = () => JSON.parse(readFileSync(join(dir, 'stats'), 'utf8'));
      pid = stats().pid;
      let unmounted;
      return {
        dir,
        device: join(dir, 'disk'),
        pid,
        mountMs,
        logFile: `${cacheDir}.log`,
        stats,
        rss: () => vmHWM(pid),
        unmount() {
          unmounted ??= (async () => {
            const t = performance.now();
            const r = await run(process.execPath, [...nodeArgs, cli, 'unmount', dir, '--timeout', '3600'], { env: s3.env, timeoutMs: 3_700_000 });
            await waitFor(() => !pidAlive(pid), 30_000);
            const ms = performance.now() - t;
            if (r.code !== 0 || isMounted(dir) || pidAlive(pid)) {
              const msg = `s3zmount unmount ${dir} failed (exit ${r.code}, mounted ${isMounted(dir)}, daemon ${pid} alive ${pidAlive(pid)}): ${r.stderr.trim()}`;
              await force();
              throw new Error(msg);
            }
            await force(); // unregisters; nothing left to do
            rmSync(cacheDir, { recursive: true, force: true });
            return ms;
          })();
          return unmounted;
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------
// s3backer

/** Arguments shared by every s3backer mount (also printed in the report). */
export function s3backerArgs(endpoint, { size, readOnly }) {
  const blocks = Math.ceil(parseSize(size) / MiB);
  return [
    `--baseURL=${endpoint}/`,
    '--accessId=S3RVER',
    '--accessKey=S3RVER',
    '--blockSize=1M',
    `--size=${size}`,
    '--listBlocks',
    // a block cache that holds the whole volume (s3zmount's cache does too)
    `--blockCacheSize=${blocks + 16}`,
    ...(readOnly ? ['--readOnly'] : []),
    '-f',
  ];
}

export function parseSize(s) {
  const m = /^(\d+)([KMGT]?)$/i.exec(String(s));
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

export function s3backerTool({ s3 }) {
  return {
    name: 's3backer',
    deviceName: 'file',
    async newVolume(tag, size) {
      const bucket = await s3.newBucket(`b-${tag}`);
      return { bucket, prefix: '', size };
    },
    async blocksStored(vol) {
      return countObjects(s3, vol.bucket);
    },
    async mount(vol, dir, { readOnly = false } = {}) {
      mkdirSync(dir, { recursive: true });
      const started = performance.now();
      const proc = startChild('s3backer', [...s3backerArgs(s3.endpoint, { size: vol.size, readOnly }), vol.bucket, dir]);
      const force = defer(`s3backer pid ${proc.pid} on ${dir}`, async () => {
        if (proc.running()) {
          detach(dir);
          await proc.stop(60_000);
        }
        detach(dir);
      });
      const ok = await waitFor(() => isMounted(dir) || !proc.running(), 60_000);
      if (!ok || !isMounted(dir)) {
        await force();
        throw new Error(`s3backer did not mount ${dir}: ${proc.output().trim().slice(-2000)}`);
      }
      const mountMs = performance.now() - started;
      let unmounted;
      return {
        dir,
        device: join(dir, 'file'),
        pid: proc.pid,
        mountMs,
        output: proc.output,
        rss: () => vmHWM(proc.pid),
        stats: () => readFileSync(join(dir, 'stats'), 'utf8'),
        unmount() {
          unmounted ??= (async () => {
            const t = performance.now();
            let r = await run('fusermount3', ['-u', dir]);
            for (let i = 0; r.code !== 0 && i < 50; i++) {
              await sleep(200);
              r = await run('fusermount3', ['-u', dir]);
            }
            if (r.code !== 0) {
              await force();
              throw new Error(`fusermount3 -u ${dir}: ${r.stderr.trim()}`);
            }
            // s3backer flushes its dirty blocks after the unmount, then exits
            const exited = await Promise.race([proc.exited, sleep(3_600_000).then(() => null)]);
            const ms = performance.now() - t;
            if (exited === null) {
              await force();
              throw new Error(`s3backer pid ${proc.pid} did not exit within an hour of unmount`);
            }
            if (exited.code !== 0) log(`s3backer on ${dir} exited with ${exited.code ?? exited.signal}: ${proc.output().trim().slice(-500)}`);
            await force(); // unregisters
            return ms;
          })();
          return unmounted;
        },
      };
    },
  };
}
