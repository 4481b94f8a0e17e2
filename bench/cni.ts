// Benchmark: CNI ADD and DEL latency of a bridge + portmap chain, tsnet's plugins
// against the reference plugins (Debian's containernetworking-plugins, /usr/lib/cni),
// on the same configuration in the same run.
//
//   node dist/bench/cni.js [--n 100] [--concurrent 20]
//
// Each "ADD" is what a runtime does for one container: exec the bridge plugin,
// then the portmap plugin with the bridge's result as prevResult (one hostPort
// each). "DEL" runs them in reverse. Everything happens inside a throwaway host
// namespace, with a fresh network namespace per container.
//
// tsnet's plugins are a native client of a warm CNI server that the first call
// starts: "tsnet" is that normal path (its first ADD, which also starts the server,
// is reported on its own); "tsnet-direct" (TSNET_CNI_SERVER=0) runs Node per call.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, summarize } from './stats.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, d: number) => Number(args[args.indexOf(name) + 1] ?? d) || d;
const N = opt('--n', 100);
const C = opt('--concurrent', 20);
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

interface Impl {
  label: string;
  binDir: string;
  bridge: string;
  portmap: string;
  ipam: string;
  subnet: string;
  bridgeName: string;
  env?: Record<string, string>;
}

function exec(bin: string, env: Record<string, string>, stdin: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c = spawn('nsenter', [`--net=/run/netns/${HOST}`, '--', bin], { env: { PATH: process.env.PATH ?? '', ...env } });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('close', (code) => resolve({ code: code ?? -1, out }));
    c.stdin.end(stdin);
  });
}

const HOST = `tsnet-bc-${randomBytes(3).toString('hex')}`;
const made: string[] = [];

async function chain(impl: Impl, i: number, cmd: 'ADD' | 'DEL', dataDir: string): Promise<number> {
  const ns = `${HOST}-${impl.label}-${i}`;
  const env = { CNI_COMMAND: cmd, CNI_CONTAINERID: `${impl.label}-${i}`, CNI_NETNS: `/run/netns/${ns}`, CNI_IFNAME: 'eth0', CNI_PATH: impl.binDir, NODE_EXTRA_CA_CERTS: '', ...impl.env };
  const bridgeConf = {
    cniVersion: '1.0.0', name: `bench-${impl.label}`, type: impl.bridge, bridge: impl.bridgeName, isGateway: true, ipMasq: true,
    ipam: { type: impl.ipam, ranges: [[{ subnet: impl.subnet }]], dataDir },
  };
  const pm = (prev: unknown) => JSON.stringify({ cniVersion: '1.0.0', name: `bench-${impl.label}`, type: impl.portmap, snat: true, runtimeConfig: { portMappings: [{ hostPort: 20000 + i, containerPort: 80, protocol: 'tcp' }] }, prevResult: prev });
  const t0 = process.hrtime.bigint();
  if (cmd === 'ADD') {
    const b = await exec(join(impl.binDir, impl.bridge), env, JSON.stringify(bridgeConf));
    if (b.code !== 0) throw new Error(`${impl.label} bridge ADD: ${b.out}`);
    const p = await exec(join(impl.binDir, impl.portmap), env, pm(JSON.parse(b.out)));
    if (p.code !== 0) throw new Error(`${impl.label} portmap ADD: ${p.out}`);
  } else {
    const p = await exec(join(impl.binDir, impl.portmap), env, pm({ cniVersion: '1.0.0' }));
    if (p.code !== 0) throw new Error(`${impl.label} portmap DEL: ${p.out}`);
    const b = await exec(join(impl.binDir, impl.bridge), env, JSON.stringify(bridgeConf));
    if (b.code !== 0) throw new Error(`${impl.label} bridge DEL: ${b.out}`);
  }
  return ms(t0);
}

async function measure(impl: Impl, dataDir: string) {
  const names = Array.from({ length: N + C }, (_, i) => `${HOST}-${impl.label}-${i}`);
  for (const n of names) {
    spawnSync('ip', ['netns', 'add', n]);
    made.push(n);
  }
  const seqAdd: number[] = [];
  const seqDel: number[] = [];
  const first = await chain(impl, 0, 'ADD', dataDir);
  seqAdd.push(first);
  for (let i = 1; i < N; i++) seqAdd.push(await chain(impl, i, 'ADD', dataDir));
  for (let i = 0; i < N; i++) seqDel.push(await chain(impl, i, 'DEL', dataDir));
  const idx = Array.from({ length: C }, (_, k) => N + k);
  let t0 = process.hrtime.bigint();
  const conAdd = await Promise.all(idx.map((i) => chain(impl, i, 'ADD', dataDir)));
  const conAddWall = ms(t0);
  t0 = process.hrtime.bigint();
  const conDel = await Promise.all(idx.map((i) => chain(impl, i, 'DEL', dataDir)));
  const conDelWall = ms(t0);
  return { first, seqAdd, seqDel, conAdd, conDel, conAddWall, conDelWall };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  if (!existsSync('/usr/lib/cni/bridge')) throw new Error('the reference plugins are needed: apt-get install containernetworking-plugins');
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bc-'));
  const ours = join(dir, 'bin');
  // The plugins' run directory (locks, the server's socket) is the benchmark's own.
  const r = spawnSync(process.execPath, [join(REPO, 'bin', 'tsnet.js'), '--run-dir', join(dir, 'run'), 'cni', 'install', '--bin-dir', ours], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  if (r.status !== 0) throw new Error(r.stderr);
  spawnSync('ip', ['netns', 'add', HOST]);
  spawnSync('ip', ['-n', HOST, 'link', 'set', 'lo', 'up']);
  const impls: Impl[] = [
    { label: 'tsnet', binDir: ours, bridge: 'tsnet-bridge', portmap: 'tsnet-portmap', ipam: 'tsnet-ipam', subnet: '10.90.0.0/16', bridgeName: 'cnits0' },
    { label: 'tsnet-direct', binDir: ours, bridge: 'tsnet-bridge', portmap: 'tsnet-portmap', ipam: 'tsnet-ipam', subnet: '10.92.0.0/16', bridgeName: 'cnitd0', env: { TSNET_CNI_SERVER: '0' } },
    { label: 'ref', binDir: '/usr/lib/cni', bridge: 'bridge', portmap: 'portmap', ipam: 'host-local', subnet: '10.91.0.0/16', bridgeName: 'cniref0' },
  ];
  const res: Record<string, Awaited<ReturnType<typeof measure>>> = {};
  try {
    for (const impl of impls) res[impl.label] = await measure(impl, join(dir, `ipam-${impl.label}`));
  } finally {
    // The CNI server our first call started lives in the host namespace: end it with it.
    spawnSync('ip', ['netns', 'pids', HOST], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).forEach((pid) => spawnSync('kill', ['-9', pid]));
    for (const n of made) spawnSync('ip', ['netns', 'del', n]);
    spawnSync('ip', ['netns', 'del', HOST]);
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = [`CNI bridge+portmap chain, ${N} sequential and ${C} concurrent (${new Date().toISOString()})`, ''];
  lines.push('| chain | op | median ms | p95 ms | concurrent: median ms | concurrent: p95 ms | concurrent: wall ms |', '|---|---|---|---|---|---|---|');
  for (const [label, x] of Object.entries(res)) {
    const name = { tsnet: 'tsnet (client + warm server)', 'tsnet-direct': 'tsnet, TSNET_CNI_SERVER=0 (Node per call)', ref: 'reference (bridge + portmap, host-local)' }[label];
    for (const [op, seq, con, wall] of [['ADD', x.seqAdd, x.conAdd, x.conAddWall], ['DEL', x.seqDel, x.conDel, x.conDelWall]] as const) {
      const s = summarize(seq as number[]);
      const c = summarize(con as number[]);
      lines.push(`| ${name} | ${op} | ${fmt(s.median)} | ${fmt(s.p95)} | ${fmt(c.median)} | ${fmt(c.p95)} | ${fmt(wall as number)} |`);
    }
  }
  const ratio = (a: number[], b: number[]) => fmt(summarize(b).median / summarize(a).median);
  lines.push('', 'Ratios of medians (reference / tsnet; above 1 means tsnet is faster):');
  lines.push(`- sequential ADD ${ratio(res.tsnet!.seqAdd, res.ref!.seqAdd)}x, DEL ${ratio(res.tsnet!.seqDel, res.ref!.seqDel)}x`);
  lines.push(`- concurrent ADD ${ratio(res.tsnet!.conAdd, res.ref!.conAdd)}x, DEL ${ratio(res.tsnet!.conDel, res.ref!.conDel)}x`);
  lines.push(`- first ADD (cold: tsnet's starts its server) tsnet ${fmt(res.tsnet!.first)} ms, tsnet-direct ${fmt(res['tsnet-direct']!.first)} ms, reference ${fmt(res.ref!.first)} ms`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
