// Benchmark: programming published ports, per firewall backend.
//
//   node dist/bench/portmap.js [--n 1000]
//
// Inside a throwaway network namespace, drives each FirewallBackend the way the
// controller does: (1) incremental: one mapping added per operation up to N, then
// removed one per operation, every operation timed; (2) batch: 0 -> 1, 100, N
// mappings in one reconcile, and back to 0. Both run with the generation mark (the
// normal configuration) so the per-operation cost is what tsnet pays in practice.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRealSystem } from '../src/system/real/index.js';
import { silentLogger } from '../src/log.js';
import { chooseFirewall } from '../src/compose/index.js';
import type { FwBinding, FwState } from '../src/firewall/backend.js';
import { fmt, summarize } from './stats.js';

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--n') + 1] ?? 1000) || 1000;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

const NET = { id: 'b'.repeat(64), name: 'bench', bridge: 'tsnbench0', subnets: [{ family: 4 as const, cidr: '10.200.0.0/16' }], internal: false, icc: true, masquerade: true };
const binding = (i: number): FwBinding => ({
  networkId: NET.id, network: 'bench', endpointId: i.toString(16).padStart(12, '0'), bridge: NET.bridge, family: 4, proto: 'tcp', hostIP: '',
  hostPort: 20000 + i, hostPortEnd: 20000 + i, containerIP: `10.200.${(i >> 8) & 255}.${(i & 255) || 1}`, containerPort: 80, containerPortEnd: 80,
});
const state = (n: number): FwState => ({ networks: [NET], bindings: Array.from({ length: n }, (_, i) => binding(i)) });

async function inner(): Promise<void> {
  const dir = process.env.TSNET_BENCH_DIR!;
  const out: Record<string, unknown> = {};
  for (const backend of ['iptables', 'nftables'] as const) {
    const sys = createRealSystem(silentLogger());
    const fw = chooseFirewall(backend, sys, silentLogger(), join(dir, backend));
    await fw.reconcile(state(0));
    const add: number[] = [];
    for (let i = 1; i <= N; i++) {
      const t0 = process.hrtime.bigint();
      await fw.reconcile(state(i));
      add.push(ms(t0));
    }
    const del: number[] = [];
    for (let i = N - 1; i >= 0; i--) {
      const t0 = process.hrtime.bigint();
      await fw.reconcile(state(i));
      del.push(ms(t0));
    }
    const batch: Record<string, number> = {};
    for (const n of [1, 100, N]) {
      let t0 = process.hrtime.bigint();
      await fw.reconcile(state(n));
      batch[`publish ${n}`] = ms(t0);
      t0 = process.hrtime.bigint();
      await fw.reconcile(state(0));
      batch[`remove ${n}`] = ms(t0);
    }
    await fw.removeAll();
    out[backend] = { add, del, batch };
  }
  process.stdout.write(JSON.stringify(out));
}

async function outer(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  const ns = `tsnet-bp-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bp-'));
  spawnSync('ip', ['netns', 'add', ns]);
  let res: Record<string, { add: number[]; del: number[]; batch: Record<string, number> }>;
  try {
    const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, fileURLToPath(import.meta.url), ...args], {
      env: { ...process.env, TSNET_BENCH_INNER: '1', TSNET_BENCH_DIR: dir, NODE_EXTRA_CA_CERTS: '' }, encoding: 'utf8', maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(r.stderr);
    res = JSON.parse(r.stdout);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = [`published-port programming, ${N} mappings (${new Date().toISOString()})`, ''];
  lines.push('| backend | op | 1st ms | 100th ms | last ms | median ms | p95 ms |', '|---|---|---|---|---|---|---|');
  for (const [b, r] of Object.entries(res)) {
    for (const [label, xs] of [['add one mapping', r.add], ['remove one mapping', r.del]] as const) {
      const s = summarize(xs);
      lines.push(`| ${b} | ${label} | ${fmt(xs[0]!)} | ${fmt(xs[99] ?? NaN)} | ${fmt(xs[xs.length - 1]!)} | ${fmt(s.median)} | ${fmt(s.p95)} |`);
    }
  }
  lines.push('', '| backend | publish 1 | remove 1 | publish 100 | remove 100 | publish N | remove N |', '|---|---|---|---|---|---|---|');
  for (const [b, r] of Object.entries(res)) {
    const x = r.batch;
    lines.push(`| ${b} | ${fmt(x['publish 1']!)} | ${fmt(x['remove 1']!)} | ${fmt(x['publish 100']!)} | ${fmt(x['remove 100']!)} | ${fmt(x[`publish ${N}`]!)} | ${fmt(x[`remove ${N}`]!)} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.env.TSNET_BENCH_INNER) await inner();
else await outer();
