// Benchmark: connect + disconnect of N sandboxes to one bridge network.
//
//   node dist/bench/connect.js [--n 200] [--no-docker] [--no-cli]
//
// Runs as root inside throwaway network namespaces (the machine's own network is
// not touched). Measures, per operation:
//   - tsnet library: Controller.connect/disconnect in this process;
//   - tsnet CLI: one `tsnet network connect` process per operation;
//   - Docker (when dockerd is installed): the same shape of work against a
//     dockerd started for the benchmark in its own namespace, through its HTTP
//     API (POST /networks/NAME/connect) and through the docker CLI.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compose } from '../src/compose/index.js';
import { silentLogger } from '../src/log.js';
import { HEADER, row, summarize, fmt } from './stats.js';
import { haveDocker, startDockerd } from './docker.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--n') + 1] ?? 200) || 200;
const withDocker = !args.includes('--no-docker');
const withCli = !args.includes('--no-cli');

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const sh = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });

async function inner(): Promise<void> {
  // Runs inside the benchmark's host namespace (re-executed under nsenter).
  const dir = process.env.TSNET_BENCH_DIR!;
  const settings = { root: join(dir, 'root'), runDir: join(dir, 'run'), firewall: 'iptables' as const };
  const { controller } = compose(settings, silentLogger());
  await controller.createNetwork({ name: 'bench', subnets: ['10.200.0.0/16'] });
  const names = Array.from({ length: N }, (_, i) => `s${i}`);
  for (const n of names) await controller.createSandbox({ name: n });
  const connect: number[] = [];
  const disconnect: number[] = [];
  for (const n of names) {
    const t0 = process.hrtime.bigint();
    await controller.connect('bench', n);
    connect.push(ms(t0));
  }
  for (const n of names) {
    const t0 = process.hrtime.bigint();
    await controller.disconnect('bench', n);
    disconnect.push(ms(t0));
  }
  const cliConnect: number[] = [];
  const cliDisconnect: number[] = [];
  if (withCli) {
    const env = { ...process.env, TSNET_ROOT: settings.root, TSNET_RUN: settings.runDir, NODE_EXTRA_CA_CERTS: '' };
    const cli = (a: string[]) => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(process.execPath, [join(REPO, 'bin', 'tsnet.js'), ...a], { env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tsnet ${a.join(' ')}: ${r.stderr}`);
      return ms(t0);
    };
    for (const n of names) cliConnect.push(cli(['network', 'connect', 'bench', n]));
    for (const n of names) cliDisconnect.push(cli(['network', 'disconnect', 'bench', n]));
  }
  process.stdout.write(JSON.stringify({ connect, disconnect, cliConnect, cliDisconnect }));
}

function dockerRequest(sock: string, path: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const t0 = process.hrtime.bigint();
    const req = http.request({ socketPath: sock, path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => ((res.statusCode ?? 500) < 300 ? resolve(ms(t0)) : reject(new Error(`docker ${path}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function benchDocker(): Promise<Record<string, number[]> | undefined> {
  if (!haveDocker()) {
    process.stderr.write('dockerd not installed (apt-get install docker.io): skipping the Docker side\n');
    return undefined;
  }
  const d = await startDockerd();
  const { docker, sock } = d;
  try {
    if (docker(['network', 'create', '--subnet', '10.200.0.0/16', 'bench']).status !== 0) throw new Error('docker network create failed');
    const names = Array.from({ length: N }, (_, i) => `c${i}`);
    for (const n of names) {
      const r = docker(['run', '-d', '--name', n, 'bb', 'sleep', '3600']);
      if (r.status !== 0) throw new Error(`docker run: ${r.stderr}`);
    }
    const out: Record<string, number[]> = { apiConnect: [], apiDisconnect: [], cliConnect: [], cliDisconnect: [] };
    for (const n of names) out.apiConnect!.push(await dockerRequest(sock, '/v1.41/networks/bench/connect', { Container: n }));
    for (const n of names) out.apiDisconnect!.push(await dockerRequest(sock, '/v1.41/networks/bench/disconnect', { Container: n }));
    const cli = (a: string[]) => {
      const t0 = process.hrtime.bigint();
      const r = docker(a);
      if (r.status !== 0) throw new Error(`docker ${a.join(' ')}: ${r.stderr}`);
      return ms(t0);
    };
    if (withCli) {
      for (const n of names) out.cliConnect!.push(cli(['network', 'connect', 'bench', n]));
      for (const n of names) out.cliDisconnect!.push(cli(['network', 'disconnect', 'bench', n]));
    }
    docker(['rm', '-f', ...names]);
    docker(['network', 'rm', 'bench']);
    return out;
  } finally {
    await d.stop();
  }
}

async function outer(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark makes network namespaces');
  const ns = `tsnet-b-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-b-'));
  sh(['ip', 'netns', 'add', ns]);
  sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  let ours: Record<string, number[]>;
  try {
    const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, fileURLToPath(import.meta.url), ...args], {
      env: { ...process.env, TSNET_BENCH_INNER: '1', TSNET_BENCH_DIR: dir, NODE_EXTRA_CA_CERTS: '' },
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(`benchmark failed: ${r.stderr}`);
    ours = JSON.parse(r.stdout);
  } finally {
    const pins = join(dir, 'run', 'netns');
    if (existsSync(pins)) for (const p of readdirSync(pins)) spawnSync('umount', ['-l', join(pins, p)]);
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
  const dockerRes = withDocker ? await benchDocker() : undefined;

  const lines = [`connect/disconnect of ${N} sandboxes on one bridge network (${new Date().toISOString()})`, '', ...HEADER];
  const lib = summarize(ours.connect!);
  const libD = summarize(ours.disconnect!);
  lines.push(row('tsnet library connect', lib), row('tsnet library disconnect', libD));
  if (ours.cliConnect!.length) lines.push(row('tsnet CLI connect', summarize(ours.cliConnect!)), row('tsnet CLI disconnect', summarize(ours.cliDisconnect!)));
  if (dockerRes) {
    lines.push(row('dockerd API connect', summarize(dockerRes.apiConnect!)), row('dockerd API disconnect', summarize(dockerRes.apiDisconnect!)));
    if (dockerRes.cliConnect!.length) lines.push(row('docker CLI connect', summarize(dockerRes.cliConnect!)), row('docker CLI disconnect', summarize(dockerRes.cliDisconnect!)));
    const ratio = (a: number[], b: number[]) => fmt(summarize(b).median / summarize(a).median);
    lines.push('', 'Ratios of medians (Docker / tsnet; above 1 means tsnet is faster):');
    lines.push(`- connect, tsnet library vs dockerd API: ${ratio(ours.connect!, dockerRes.apiConnect!)}x`);
    lines.push(`- disconnect, tsnet library vs dockerd API: ${ratio(ours.disconnect!, dockerRes.apiDisconnect!)}x`);
    if (ours.cliConnect!.length && dockerRes.cliConnect!.length) {
      lines.push(`- connect, tsnet CLI vs docker CLI: ${ratio(ours.cliConnect!, dockerRes.cliConnect!)}x`);
      lines.push(`- disconnect, tsnet CLI vs docker CLI: ${ratio(ours.cliDisconnect!, dockerRes.cliDisconnect!)}x`);
    }
  }
  lines.push('', `Flatness (library connect): median of the last 20 / first 20 = ${fmt(lib.last20Median / lib.first20Median)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.env.TSNET_BENCH_INNER) await inner();
else await outer();
