// Turns the benchmark's results into tables: one renderer, whose padded pipe
// tables read well on a terminal and are valid Markdown.
const MiB = 1 << 20;
const GiB = 1 << 30;

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
const fmt = (x, d = 1) => (isNum(x) ? x.toFixed(d) : '—');
const fmtMB = (x) => (isNum(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '—');
const fmtS = (ms) => (isNum(ms) ? (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) : '—');
const pct = (a, b) => (isNum(a) && isNum(b) && b > 0 ? `${((100 * a) / b).toFixed(0)}%` : '—');
const ratio = (a, b) => (isNum(a) && isNum(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const mib = (b) => (isNum(b) ? `${(b / MiB).toFixed(0)} MiB` : '—');

function table(headers, rows) {
  const cells = [headers, ...rows].map((r) => r.map((c) => String(c ?? '—').replace(/\|/g, '\\|')));
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(cells[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

const get = (o, path) => path.split('.').reduce((a, k) => (a == null ? undefined : a[k]), o);

/** The error of a phase, for a table cell. */
function errCell(r, phase) {
  const p = r?.[phase];
  return p?.error ? `error` : undefined;
}

/** Targets: [{ name, latency, measured (text), ok (bool|undefined) }]. */
export function targets(report) {
  const out = [];
  const { results } = report;
  const fuseRead = results.fuse?.cReadMBps;
  for (const lat of report.latencies) {
    const L = results.latencies[lat];
    if (!L) continue;
    const z = L.tools.s3zmount ?? {};
    const b = L.tools.s3backer ?? {};
    const coldZ = get(z, 'seqRead.cold.MBps');
    const coldB = get(b, 'seqRead.cold.MBps');
    const wZ = get(z, 'write.MBps');
    const wB = get(b, 'write.MBps');
    const warmZ = get(z, 'seqRead.warm.MBps');
    const push = (name, a, bb, min, unit = '×') => {
      const v = isNum(a) && isNum(bb) && bb > 0 ? a / bb : undefined;
      const shown = v === undefined ? '—' : unit === '%' ? `${(100 * v).toFixed(0)}%` : `${v.toFixed(2)}×`;
      out.push({ name, latency: lat, measured: shown, need: unit === '%' ? `≥ ${(100 * min).toFixed(0)}%` : `≥ ${min}×`, ok: v === undefined ? undefined : v >= min });
    };
    // Issue 9's table (both latencies unless said), then issue 10's image rows.
    push('zfs: write + export + unmount vs s3backer', get(z, 'zfs.MBps'), get(b, 'zfs.MBps'), 1.2);
    push('warm random 4K read vs s3backer', get(z, 'seqRead.fioWarm.iops'), get(b, 'seqRead.fioWarm.iops'), 1.0);
    push('warm seq read vs s3backer', warmZ, get(b, 'seqRead.warm.MBps'), 1.5);
    push('warm seq read vs C FUSE read', warmZ, fuseRead, 0.5, '%');
    push('seq write until in S3 vs s3backer', wZ, wB, 1.0);
    push('seq write until in S3 vs raw PUT', wZ, L.raw?.putMBps, 0.85, '%');
    push('cold seq read vs s3backer', coldZ, coldB, 1.0);
    push('cold seq read vs raw GET', coldZ, L.raw?.getMBps, 0.85, '%');
    if (lat === 20) push('cold random 4K read vs s3backer', get(z, 'randCold.iops'), get(b, 'randCold.iops'), 2.5);
    // Lower is better for both: the ratio is s3backer's over ours.
    push('zdb -r of one file: GETs, s3backer ÷ s3zmount', get(b, 'zdb.readCounts.get'), get(z, 'zdb.readCounts.get'), 1.0);
    push('zdb -r of one file: time, s3backer ÷ s3zmount', get(b, 'zdb.readMs'), get(z, 'zdb.readMs'), 1.0);
    push('put of the image vs raw PUT', L.image?.putMBps, L.raw?.putMBps, 0.85, '%');
    push('get of the image vs raw GET', L.image?.getMBps, L.raw?.getMBps, 0.85, '%');
    const again = L.image?.againBlockPuts;
    out.push({ name: 'second put of the same image: block PUTs', latency: lat, measured: isNum(again) ? String(again) : '—', need: '0', ok: isNum(again) ? again === 0 : undefined });
  }
  if (!report.latencies.includes(20)) out.push({ name: 'cold random 4K read vs s3backer', latency: 20, measured: 'not run', need: '≥ 2.5×', ok: undefined });
  const rss = results.rss1t?.rss;
  out.push({ name: 'daemon peak RSS, 1 TiB volume', latency: 0, measured: mib(rss), need: '≤ 300 MiB', ok: isNum(rss) ? rss <= 300 * MiB : undefined });
  return out;
}

function resultsTable(report, lat) {
  const L = report.results.latencies[lat];
  const z = L.tools.s3zmount ?? {};
  const b = L.tools.s3backer ?? {};
  const fuse = report.results.fuse;
  const rows = [];
  // [label, zValue, bValue, higherIsBetter, ceilingText]
  const row = (label, pz, pb, path, f, higher, ceil) => {
    const vz = get(z, path);
    const vb = get(b, path);
    const speed = higher ? ratio(vz, vb) : ratio(vb, vz);
    rows.push([label, errCell(z, pz) ?? f(vz), errCell(b, pb) ?? f(vb), speed, ceil ?? '']);
  };
  row(`seq write ${report.size}, until in S3 (MB/s)`, 'write', 'write', 'write.MBps', fmtMB, true, `${pct(get(z, 'write.MBps'), L.raw?.putMBps)} of raw PUT`);
  rows.push([
    '  of which: dd / unmount (s)',
    z.write?.error ? 'error' : `${fmtS(get(z, 'write.ddMs'))} / ${fmtS(get(z, 'write.unmountMs'))}`,
    b.write?.error ? 'error' : `${fmtS(get(b, 'write.ddMs'))} / ${fmtS(get(b, 'write.unmountMs'))}`,
    '',
    '',
  ]);
  row('cold seq read (MB/s)', 'seqRead', 'seqRead', 'seqRead.cold.MBps', fmtMB, true, `${pct(get(z, 'seqRead.cold.MBps'), L.raw?.getMBps)} of raw GET`);
  row('warm seq read (MB/s)', 'seqRead', 'seqRead', 'seqRead.warm.MBps', fmtMB, true, `${pct(get(z, 'seqRead.warm.MBps'), fuse?.cReadMBps)} of C FUSE read`);
  row('cold random 4K read (IOPS)', 'randCold', 'randCold', 'randCold.iops', (x) => fmt(x, 0), true);
  row('warm random 4K read (IOPS)', 'seqRead', 'seqRead', 'seqRead.fioWarm.iops', (x) => fmt(x, 0), true);
  row('random 4K write, until in S3 (IOPS)', 'randWrite', 'randWrite', 'randWrite.iopsToS3', (x) => fmt(x, 0), true);
  rows.push([
    '  of which: IOPS during fio / unmount (s)',
    z.randWrite?.error ? 'error' : `${fmt(get(z, 'randWrite.iops'), 0)} / ${fmtS(get(z, 'randWrite.unmountMs'))}`,
    b.randWrite?.error ? 'error' : `${fmt(get(b, 'randWrite.iops'), 0)} / ${fmtS(get(b, 'randWrite.unmountMs'))}`,
    '',
    '',
  ]);
  row('zfs: write files + export + unmount (MB/s)', 'zfs', 'zfs', 'zfs.MBps', fmtMB, true);
  rows.push([
    '  of which: write / export / unmount (s)',
    z.zfs?.error ? 'error' : `${fmtS(get(z, 'zfs.writeMs'))} / ${fmtS(get(z, 'zfs.exportMs'))} / ${fmtS(get(z, 'zfs.unmountMs'))}`,
    b.zfs?.error ? 'error' : `${fmtS(get(b, 'zfs.writeMs'))} / ${fmtS(get(b, 'zfs.exportMs'))} / ${fmtS(get(b, 'zfs.unmountMs'))}`,
    '',
    '',
  ]);
  row('zpool export (s)', 'zfs', 'zfs', 'zfs.exportMs', fmtS, false);
  row('cold read-only "import": zdb -e -d (s)', 'zdb', 'zdb', 'zdb.importMs', fmtS, false);
  row(`cold zdb -r of one ${report.params.zfsFileMiB} MiB file (s)`, 'zdb', 'zdb', 'zdb.readMs', fmtS, false);
  return table(['workload', 's3zmount', 's3backer', 's3zmount ÷ s3backer (speed)', 's3zmount ÷ ceiling'], rows);
}

function costsTable(report, lat) {
  const L = report.results.latencies[lat];
  const rows = [];
  const phases = [
    ['seq write', 'write.counts', 'write.bytes'],
    ['cold seq read', 'seqRead.cold.counts', 'seqRead.cold.bytes'],
    ['warm seq read', 'seqRead.warm.counts', 'seqRead.warm.bytes'],
    ['cold random 4K read', 'randCold.counts', 'randCold.bytes'],
    ['warm random 4K read', 'seqRead.fioWarm.counts', 'seqRead.fioWarm.bytes'],
    ['random 4K write + unmount', 'randWrite.counts', 'randWrite.bytes'],
    ['zfs write + export + unmount', 'zfs.counts', 'zfs.bytes'],
    ['zdb -d (import)', 'zdb.importCounts', undefined],
    ['zdb -r (one file)', 'zdb.readCounts', 'zdb.fileBytes'],
  ];
  for (const [label, cPath, bPath] of phases) {
    for (const name of ['s3zmount', 's3backer']) {
      const r = L.tools[name];
      if (!r) continue;
      const c = get(r, cPath);
      if (!c) continue;
      const bytes = bPath ? get(r, bPath) : undefined;
      const g = isNum(bytes) && bytes > 0 ? bytes / GiB : undefined;
      const moved = !g ? '—' : g >= 0.1 ? `${fmt(g, 2)} GiB` : `${fmt(bytes / MiB, 1)} MiB`;
      const per = (n) => (g ? fmt(n / g, 0) : '—');
      const del = c.post ? `${c.delete} (+${c.post} POST)` : String(c.delete);
      rows.push([label, name, c.get, c.put, del, c.list, c.head, moved, per(c.get), per(c.put), per(c.delete + (c.post ?? 0)), per(c.list)]);
    }
  }
  return table(['workload', 'tool', 'GET', 'PUT', 'DELETE', 'LIST', 'HEAD', 'data moved', 'GET/GiB', 'PUT/GiB', 'DELETE/GiB', 'LIST/GiB'], rows);
}

/** "peak (anon A + file F now)" from a memStatus() sample. */
function memCell(m) {
  if (!m || !isNum(m.hwm)) return '—';
  const n = (b) => (isNum(b) ? (b / MiB).toFixed(0) : '?');
  return `${n(m.hwm)} (${n(m.anon)} + ${n(m.file)})`;
}

function memoryTable(report) {
  const rows = [];
  for (const lat of report.latencies) {
    const L = report.results.latencies[lat];
    if (!L) continue;
    for (const name of ['s3zmount', 's3backer']) {
      const r = L.tools[name];
      if (!r) continue;
      rows.push([
        `${lat} ms`,
        name,
        memCell(get(r, 'write.rss')),
        memCell(get(r, 'seqRead.rss')),
        memCell(get(r, 'randCold.rss')),
        memCell(get(r, 'zfs.rss')),
        memCell(get(r, 'zdb.rss')),
      ]);
    }
  }
  return table(['latency', 'tool', 'after seq write', 'after seq reads + warm fio', 'after cold fio', 'after zfs pool', 'after zdb'], rows);
}

export function renderMarkdown(report) {
  const { results: R, machine: M } = report;
  const out = [];
  out.push('# Benchmarks');
  out.push('');
  out.push('Generated by `scripts/bench.js` (`npm run bench`); do not edit by hand: run it again.');
  out.push('');
  out.push(`- date: ${report.date}`);
  out.push(`- command: \`${report.command}\` (after \`npm run build\`), took ${(report.durationS / 60).toFixed(1)} min`);
  if (report.source?.head) {
    const ch = report.source.changed ?? [];
    out.push(`- source: commit ${report.source.head}${ch.length ? `, with uncommitted changes to ${ch.join(', ')}` : ''} (built with \`npm run build\`)`);
  }
  out.push(`- machine: ${M.nproc} cores (${M.cpu}), ${fmt(M.memGiB, 1)} GiB memory, kernel ${M.kernel}, ${M.os}, node ${M.node}, s3backer ${M.s3backer}, fio ${M.fio}`);
  const during = isNum(M.load1Min) ? `; 1-min load during the run ${fmt(M.load1Min, 2)}–${fmt(M.load1Max, 2)}` : '';
  out.push(`- load average (1, 5, 15 min) at start: ${M.loadAtStart}; at the end: ${M.loadavg}${during}. The benchmark itself (s3rver, proxy, tool, dd/fio) accounts for about 2–3 while it runs; more means other work shared the ${M.nproc} cores and moved the figures.`);
  if (report.quick) out.push('- **quick mode**: smaller sizes, fewer latencies; figures are indicative only');
  out.push('');
  out.push('## Set-up');
  out.push('');
  out.push(
    [
      '- S3: s3rver 3.7.1 through `s3zmount local-s3`, data in a fresh temporary folder on the same disk, behind the latency proxy of the tests (`dist-test/helpers/fault-proxy.js`, run in a process of its own), which adds the stated delay to every request and counts requests by method (LIST = a GET on a bucket). Both tools and the raw client go through the same proxy; every volume gets a fresh bucket.',
      `- Volume: ${report.size}, 1 MiB blocks, for both tools; data is random (from /dev/urandom, staged in /dev/shm), so no block is all zeros.`,
      `- s3zmount: \`s3zmount create s3://BUCKET/vol --size ${report.size} --block-size 1M\`; \`s3zmount mount s3://BUCKET/vol DIR --cache-dir FRESH [--read-only]\` (default cache size 10G); device \`DIR/disk\`.`,
      `- s3backer ${M.s3backer}: \`s3backer ${report.s3backerArgs} [--readOnly] BUCKET DIR\`; device \`DIR/file\`. Its block cache holds the whole volume (as s3zmount's does); other settings are its defaults (20 write-back threads, read-ahead 4 blocks).`,
      '- Sequential I/O: `dd bs=1M` with `oflag=direct conv=fsync` (write) or `iflag=direct` (read) on the device, so the kernel page cache plays no part for either tool. **A write ends when its data is in S3**: for s3zmount, whose fsync is a barrier, when dd returns; for s3backer, whose fsync returns at once, when its process has exited after the unmount. Unmount times are shown for both.',
      '- Order, at each latency: the raw ceiling, the image rows, then the workloads phase by phase with the two tools in turns (s3zmount\'s sequential write, s3backer\'s, s3zmount\'s reads, s3backer\'s, ...), so that both tools of a pair run after the same kind of work.',
      "- Before each ceiling, image command, sequential write and ZFS write the bench runs `sync`: none pays for writing back to disk what the phase before it left dirty in the page cache (s3rver's objects, which Linux writes back up to 30 s later). Not before the cold reads, so that s3rver serves the objects from memory there as it does for the raw GET ceiling.",
      '- Cold reads: a fresh mount (s3zmount: empty cache folder, `--read-only`; s3backer: new process, `--readOnly`) and `echo 3 > /proc/sys/vm/drop_caches`. Warm reads: the same mount, read again.',
      `- Random reads: \`fio --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1\` over the whole volume: cold on a fresh mount, size-bounded to one read per two blocks of the volume (\`--io_size\`, so that most reads need a block not fetched yet), warm for ${report.params.fioWarmS} s (\`--time_based\`) after the two sequential reads, when everything is cached.`,
      `- Random writes: \`fio --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1\` for ${report.params.fioWarmS} s over the whole of a new volume, no fsync (both tools write back), then the unmount: "until in S3" counts the writes over fio's time plus the unmount's (for s3backer, until its process has exited).`,
      `- ZFS: Debian's zfs-fuse (pool v23) in a private mount namespace (the tests' harness): \`zpool create\` on the device of a fresh ${report.params.zfsVol} volume, \`zfs create\`, ${report.params.zfsFiles} files of ${report.params.zfsFileMiB} MiB written with dd, \`zfs snapshot\`, \`zpool export\`; then the tool is unmounted (time until the data is in S3 = write + export + unmount).`,
      '- Read-only import: zfs-fuse has no read-only import, so OpenZFS 2.3 `zdb` stands in: on a fresh read-only mount with an empty cache, `zdb -e -p DIR -d POOL` (opens the pool, lists datasets) is the "import", then `zdb -e -p DIR -r POOL/fs@snap f0 DEST` copies one file out of the snapshot.',
      `- Ceilings: raw S3 = ${report.params.rawCount} PUTs then GETs of 1 MiB objects from @aws-sdk/client-s3 (keep-alive agent, path-style, \`requestChecksumCalculation: WHEN_REQUIRED\`) through the proxy, best of concurrency 16 and 32. FUSE = \`scripts/bench-fuse.js\` (npm run bench:fuse; ${report.params.fuseMiB} MiB × ${report.params.fuseRuns} run(s), 1 MiB dd on a C no-op libfuse3 low-level filesystem and on the project's JS binding with a no-op handler).`,
      '- MB/s are 10^6 bytes per second; MiB and GiB are binary.',
    ].join('\n'),
  );
  out.push('');
  out.push('## Ceilings');
  out.push('');
  const ceilRows = [];
  for (const lat of report.latencies) {
    const raw = R.latencies[lat]?.raw;
    for (const r of raw?.runs ?? []) ceilRows.push([`raw S3, concurrency ${r.concurrency}`, `${lat} ms`, fmtMB(r.getMBps), fmtMB(r.putMBps)]);
  }
  if (R.fuse) {
    ceilRows.push(['FUSE: C no-op (libfuse3 low-level)', '—', fmtMB(R.fuse.cReadMBps), fmtMB(R.fuse.cWriteMBps)]);
    ceilRows.push(["FUSE: the project's JS binding, no-op", '—', fmtMB(R.fuse.jsReadMBps), fmtMB(R.fuse.jsWriteMBps)]);
  }
  out.push(table(['ceiling', 'latency', 'read / GET (MB/s)', 'write / PUT (MB/s)'], ceilRows));
  const imageRows = [];
  for (const lat of report.latencies) {
    const im = R.latencies[lat]?.image;
    const raw = R.latencies[lat]?.raw;
    if (!im) continue;
    if (im.error) imageRows.push([`${lat} ms`, 'error', 'error', '—']);
    else imageRows.push([`${lat} ms`, `${fmtMB(im.getMBps)} (${pct(im.getMBps, raw?.getMBps)} of raw GET)`, `${fmtMB(im.putMBps)} (${pct(im.putMBps, raw?.putMBps)} of raw PUT)`, `${im.againBlockPuts} PUTs, ${fmtS(im.againMs)} s`]);
  }
  if (imageRows.length > 0) {
    out.push('');
    out.push(`### s3zmount get / put of a ${report.size} random image`);
    out.push('');
    out.push(table(['latency', 'get (MB/s)', 'put (MB/s)', 'second put'], imageRows));
  }
  out.push('');
  for (const lat of report.latencies) {
    if (!R.latencies[lat]) continue;
    out.push(`## Results, ${lat} ms added per request`);
    out.push('');
    out.push(resultsTable(report, lat));
    out.push('');
    out.push(`### Requests, ${lat} ms`);
    out.push('');
    out.push('Counted by the proxy over each workload (mount-time requests excluded except for zdb, which is only reads). "data moved" is what the application wrote or read; the per-GiB columns divide by it.');
    out.push('');
    out.push(costsTable(report, lat));
    out.push('');
  }
  out.push('## Memory');
  out.push('');
  out.push('Peak resident set in MiB (VmHWM of /proc/PID/status) of the s3zmount daemon and of the s3backer process, sampled before each unmount, with in brackets the anonymous + file-backed resident memory (RssAnon + RssFile) at that moment; file-backed pages (LMDB\'s memory map, shared libraries) can be dropped by the kernel under pressure, anonymous ones cannot. s3backer\'s block cache is in its heap (sized to the whole volume here); s3zmount\'s is in LMDB on disk.');
  out.push('');
  out.push(memoryTable(report));
  out.push('');
  if (R.rss1t) {
    out.push(`1 TiB volume (\`create --size 1T\`, mount, ${mib(R.rss1t.written)} written with fsync in 16 pieces spread over the volume, read back, 64 MiB of never-written blocks read): s3zmount daemon VmHWM **${mib(R.rss1t.rss)}** (resident then: ${mib(R.rss1t.mem?.anon)} anonymous + ${mib(R.rss1t.mem?.file)} file-backed; mount took ${fmtS(R.rss1t.mountMs)} s).`);
    out.push('');
  }
  out.push('## Targets');
  out.push('');
  out.push(
    table(
      ['target', 'latency', 'need', 'measured', 'verdict'],
      targets(report).map((t) => [t.name, `${t.latency} ms`, t.need, t.measured, t.ok === undefined ? 'n/a' : t.ok ? 'PASS' : 'MISS']),
    ),
  );
  out.push('');
  if (report.notes.length > 0 || R.errors.length > 0) {
    out.push('## Notes');
    out.push('');
    for (const n of report.notes) out.push(`- ${n}`);
    for (const e of R.errors) out.push(`- error: ${e.split('\n')[0]}`);
    out.push('');
  }
  return out.join('\n');
}

export function renderText(report) {
  return renderMarkdown(report);
}
