#!/usr/bin/env node
// Summarises V8 .cpuprofile files (from `node scripts/bench.js --cpu-prof DIR`):
// total sampled time, idle share, and the functions with the most self time,
// by function and by file.
//   node scripts/bench/profile-summary.js DIR/*.cpuprofile [--top 25] [--callers FUNCTION]
// --callers: the call chains (6 frames up) under which FUNCTION spent its self time,
// e.g. --callers update for the crypto hashing.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' }, callers: { type: 'string' } }, allowPositionals: true });
const top = Number(values.top);
if (positionals.length === 0) {
  console.error('usage: node scripts/bench/profile-summary.js FILE.cpuprofile... [--top N]');
  process.exit(2);
}

const short = (url) => (url || '').replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(dist|src|scripts)\//, '$1/');

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = p.timeDeltas ?? [];
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i];
    self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map();
  const byFile = new Map();
  for (const [id, us] of self) {
    const n = byId.get(id);
    const cf = n.callFrame;
    const fn = `${cf.functionName || '(anonymous)'} ${short(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    const f = cf.url ? short(cf.url).replace(/:\d+$/, '') : cf.functionName;
    byFile.set(f, (byFile.get(f) ?? 0) + us);
  }
  const idle = byFn.get('(idle) ') ?? 0;
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  console.log(`\n${file}: ${(total / 1e6).toFixed(1)} s sampled, ${pct(total - idle).trim()} busy`);
  console.log('  self time by function:');
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)} ${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
  console.log('  self time by file:');
  for (const [k, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, Math.min(top, 15))) console.log(`  ${pct(us)} ${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
  if (values.callers) {
    const parent = new Map();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const chains = new Map();
    for (const [id, us] of self) {
      if (byId.get(id).callFrame.functionName !== values.callers) continue;
      const chain = [];
      for (let cur = parent.get(id); cur !== undefined && chain.length < 6; cur = parent.get(cur)) {
        const cf = byId.get(cur).callFrame;
        chain.push(`${cf.functionName || '(anonymous)'} ${short(cf.url)}:${cf.lineNumber + 1}`);
      }
      const k = chain.join(' < ');
      chains.set(k, (chains.get(k) ?? 0) + us);
    }
    console.log(`  self time of ${values.callers}, by caller chain:`);
    for (const [k, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us)} ${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
  }
}
