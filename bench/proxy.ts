// Benchmark: the data path of published ports, and the proxy's memory.
//
//   node dist/bench/proxy.js [--seconds 3] [--bindings 1000] [--docker-proxies 100] [--no-local] [--no-mixed] [--no-docker]
//
// In a throwaway host namespace, one sandbox runs an iperf3 server (throughput) and
// a tiny TCP server that answers one byte and closes (connection rate). The same
// work goes, from the host namespace, through:
//   direct      the container's address (no NAT, no proxy)
//   NAT         the gateway address:published port (OUTPUT DNAT; 127.0.0.1 is the proxy's)
//   tsnet proxy [::1]:published port (IPv6 loopback is served by tsnet's proxy)
//   docker-proxy [::1]:other port, /usr/sbin/docker-proxy started by hand with its flags
// Memory: tsnet's one proxy process holding --bindings ports, against the resident
// memory of --docker-proxies docker-proxy processes (one per binding, as Docker runs them).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt } from './stats.js';
import { localPaths } from './local-paths.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, d: number) => Number(args[args.indexOf(name) + 1] ?? d) || d;
const SECONDS = opt('--seconds', 3);
const BINDINGS = opt('--bindings', 1000);
const DOCKER_PROXIES = opt('--docker-proxies', 100);
const ROUNDS = opt('--rounds', 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const ns = `tsnet-bx-${randomBytes(3).toString('hex')}`;
const nsPath = `/run/netns/${ns}`;
const dir = mkdtempSync(join(tmpdir(), 'tsnet-bx-'));
const env = { ...process.env, NODE_EXTRA_CA_CERTS: '', TSNET_ROOT: join(dir, 'root'), TSNET_RUN: join(dir, 'run'), TSNET_FIREWALL: 'iptables' };
const inNs = (argv: string[]) => ['nsenter', `--net=${nsPath}`, '--', ...argv];
const run = (argv: string[], extra: Record<string, string> = {}) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...env, ...extra }, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const tsnet = (...a: string[]) => run(inNs([process.execPath, join(REPO, 'bin', 'tsnet.js'), ...a])).trim();
const proxyPid = () => Number(readFileSync(join(dir, 'run', 'proxy.sock.pid'), 'utf8'));
const keeperPid = () => Number(readFileSync(join(dir, 'run', 'proxy.keeper.pid'), 'utf8'));
/** Stops the proxy and its keeper (which would start it again with the old settings). */
function killProxy(): void {
  for (const pid of [keeperPid, proxyPid]) {
    try {
      process.kill(pid(), 'SIGKILL');
    } catch {
      /* not running */
    }
  }
}
/** Replaces the running proxy by one with the given TCP relay mode (reconcile starts it). */
async function restartProxy(mode: 'splice' | 'streams'): Promise<void> {
  killProxy();
  await sleep(100);
  run(inNs([process.execPath, join(REPO, 'bin', 'tsnet.js'), 'system', 'reconcile']), { TSNET_PROXY_TCP: mode });
}
const children: ChildProcess[] = [];
const bg = (argv: string[], fd3 = false) => {
  const c = spawn(argv[0]!, argv.slice(1), { env, stdio: fd3 ? ['ignore', 'ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'ignore'] });
  children.push(c);
  return c;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** CPU seconds (user + system) a process has used so far. */
const cpuOf = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
};
const rssOf = (pid: number) => {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};

/** iperf3 client for SECONDS: Gbit/s received. */
function throughput(host: string, port: number): number {
  const out = run(inNs(['iperf3', '-c', host, '-p', String(port), '-t', String(SECONDS), '-J']));
  return JSON.parse(out).end.sum_received.bits_per_second / 1e9;
}

/** Short connections (connect, read one byte, close) with 8 in flight, from this namespace: per second. */
function connectionRate(host: string, port: number): number {
  const script = `
    const net = require('net'); const end = Date.now() + ${SECONDS * 1000}; let n = 0, err = 0, live = 0; const codes = {};
    const one = () => { if (Date.now() > end) { if (--live === 0) { console.log(JSON.stringify({ n, err, codes })); } return; }
      const s = net.connect(${port}, ${JSON.stringify(host)}); s.once('data', () => { n++; s.destroy(); one(); }); s.once('error', (e) => { err++; codes[e.code] = (codes[e.code] || 0) + 1; s.destroy(); one(); }); };
    for (let i = 0; i < 8; i++) { live++; one(); }`;
  const r = JSON.parse(run(inNs([process.execPath, '-e', script])));
  if (r.err > r.n / 100) throw new Error(`connection errors through ${host}:${port}: ${JSON.stringify(r)}`);
  return r.n / SECONDS;
}

async function waitPort(host: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = spawnSync('nsenter', [`--net=${nsPath}`, '--', process.execPath, '-e', `require('net').connect(${port}, ${JSON.stringify(host)}).on('connect', () => process.exit(0)).on('error', () => process.exit(1))`]).status === 0;
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  for (const tool of ['iperf3']) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is needed (apt-get install ${tool})`);
  const results: string[] = [];
  try {
    run(['ip', 'netns', 'add', ns]);
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    // Short connections by the ten thousand: the client closes first and may reuse its
    // TIME_WAIT ports, and conntrack forgets closed connections after a second, so later
    // rounds do not measure a full connection table (this namespace only).
    run(inNs(['sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=10000 65000']));
    tsnet('sandbox', 'create', '-p', '15201:5201', '-p', '18080:8080', 'srv');
    const sbx = join(dir, 'run', 'netns', 'srv');
    const cip = JSON.parse(tsnet('sandbox', 'inspect', 'srv'))[0].Networks.bridge.IPAddress as string;
    const gw = JSON.parse(tsnet('sandbox', 'inspect', 'srv'))[0].Networks.bridge.Gateway as string;
    bg(['nsenter', `--net=${sbx}`, '--', 'iperf3', '-s', '-p', '5201']);
    run(['nsenter', `--net=${sbx}`, '--', 'sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=10000 65000']);
    bg(['nsenter', `--net=${sbx}`, '--', process.execPath, '-e', "require('net').createServer((s) => { s.on('error', () => {}); s.end('x'); }).listen({ port: 8080, backlog: 4096 })"]);
    const haveDocker = existsSync('/usr/sbin/docker-proxy');
    const dockerPid: Record<number, number> = {};
    if (haveDocker) {
      for (const [hp, cp] of [[25201, 5201], [28080, 8080]]) {
        // nsenter execs docker-proxy in place, so the child's pid is docker-proxy's.
        dockerPid[hp!] = bg(inNs(['/usr/sbin/docker-proxy', '-proto', 'tcp', '-host-ip', '::1', '-host-port', String(hp), '-container-ip', cip, '-container-port', String(cp)]), true).pid!;
      }
    }
    // conntrack exists in the namespace once NAT rules use it: shorten its TIME_WAIT.
    spawnSync('nsenter', [`--net=${nsPath}`, '--', 'sysctl', '-q', '-w', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
    await waitPort(cip, 5201);
    await waitPort(cip, 8080);
    const paths: Array<[string, string, number, number, ('splice' | 'streams')?]> = [
      ['direct (container address)', cip, 5201, 8080],
      ['NAT (gateway address, DNAT)', gw, 15201, 18080],
      ['tsnet proxy, Node streams ([::1])', '::1', 15201, 18080, 'streams'],
      ['tsnet proxy, splice ([::1])', '::1', 15201, 18080, 'splice'],
    ];
    if (haveDocker) paths.push(['docker-proxy ([::1])', '::1', 25201, 28080]);
    results.push(`published-port data path, ${SECONDS} s per measurement, median of ${ROUNDS} rounds (${new Date().toISOString()})`, '', '| path | iperf3 Gbit/s (each round) | short connections/s (each round) | proxy CPU ms per GB | proxy CPU µs per connection |', '|---|---|---|---|---|');
    // The proxy process of a path (for its CPU time), if it has one.
    const proxyOf = (label: string, port: number) => (label.startsWith('tsnet proxy') ? proxyPid() : label.startsWith('docker-proxy') ? dockerPid[port] : undefined);
    const rows: Record<string, [number, number, number, number]> = {};
    // Rounds interleave the paths, so a noisy moment of the machine hits them all alike.
    const samples: Record<string, { t: number[]; c: number[]; cpuGB: number[]; cpuConn: number[] }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, host, tport, cport, mode] of paths) {
        if (mode) await restartProxy(mode);
        await waitPort(host, tport);
        const x = (samples[label] ??= { t: [], c: [], cpuGB: [], cpuConn: [] });
        const tp = proxyOf(label, tport);
        let cpu0 = tp ? cpuOf(tp) : 0;
        const gbps = throughput(host, tport);
        x.t.push(gbps);
        if (tp) x.cpuGB.push(((cpuOf(tp) - cpu0) * 1000) / ((gbps * SECONDS) / 8));
        const cp = proxyOf(label, cport);
        cpu0 = cp ? cpuOf(cp) : 0;
        const rate = connectionRate(host, cport);
        x.c.push(rate);
        if (cp) x.cpuConn.push(((cpuOf(cp) - cpu0) * 1e6) / (rate * SECONDS));
      }
    }
    for (const [label] of paths) {
      const x = samples[label]!;
      rows[label] = [median(x.t), median(x.c), x.cpuGB.length ? median(x.cpuGB) : 0, x.cpuConn.length ? median(x.cpuConn) : 0];
      const cpu = x.cpuGB.length ? `${fmt(median(x.cpuGB))} | ${fmt(median(x.cpuConn))}` : '- | -';
      results.push(`| ${label} | ${fmt(median(x.t))} (${x.t.map(fmt).join(', ')}) | ${fmt(median(x.c))} (${x.c.map((v) => v.toFixed(0)).join(', ')}) | ${cpu} |`);
    }
    if (haveDocker) {
      const [dt, dc, dg, dn] = rows['docker-proxy ([::1])']!;
      for (const mode of ['Node streams', 'splice']) {
        const [ot, oc, og, on] = rows[`tsnet proxy, ${mode} ([::1])`]!;
        results.push('', `tsnet proxy (${mode}) / docker-proxy: throughput ${fmt(ot / dt)}x, connection rate ${fmt(oc / dc)}x; CPU per GB ${fmt(og / dg)}x, CPU per connection ${fmt(on / dn)}x of docker-proxy's`);
      }
    }

    // Memory: tsnet's proxy holding BINDINGS ports vs docker-proxy processes.
    const before = rssOf(proxyPid());
    const specs: string[] = [];
    for (let i = 0; i < BINDINGS; i++) specs.push('-p', `${2000 + i}:${9000 + (i % 100)}`); // below the ephemeral range used by the clients
    tsnet('sandbox', 'create', ...specs, 'many');
    await sleep(500);
    const after = rssOf(proxyPid());
    results.push('', `| memory | processes | resident MiB | per binding KiB |`, '|---|---|---|---|');
    results.push(`| tsnet proxy, 2 bindings | 1 | ${fmt(before / 2 ** 20)} | |`);
    results.push(`| tsnet proxy, ${BINDINGS + 2} bindings (IPv4 and IPv6 listeners each) | 1 | ${fmt(after / 2 ** 20)} | ${fmt((after - before) / BINDINGS / 1024)} |`);
    if (haveDocker) {
      const dps: ChildProcess[] = [];
      for (let i = 0; i < DOCKER_PROXIES; i++) {
        dps.push(bg(inNs(['/usr/sbin/docker-proxy', '-proto', 'tcp', '-host-ip', '127.0.0.1', '-host-port', String(4000 + i), '-container-ip', cip, '-container-port', '8080']), true));
      }
      await sleep(1500);
      // nsenter execs docker-proxy in place, so the child's pid is docker-proxy's.
      const total = dps.reduce((sum, c) => sum + rssOf(c.pid!), 0);
      results.push(`| docker-proxy, ${DOCKER_PROXIES} bindings | ${DOCKER_PROXIES} | ${fmt(total / 2 ** 20)} | ${fmt(total / DOCKER_PROXIES / 1024)} |`);
      if (DOCKER_PROXIES !== BINDINGS) results.push(`| docker-proxy, ${BINDINGS} bindings (extrapolated x${BINDINGS / DOCKER_PROXIES}) | ${BINDINGS} | ${fmt((total / DOCKER_PROXIES) * BINDINGS / 2 ** 20)} | |`);
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    killProxy();
    const pins = join(dir, 'run', 'netns');
    if (existsSync(pins)) for (const p of readdirSync(pins)) spawnSync('umount', ['-l', join(pins, p)]);
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${results.join('\n')}\n`);
  // Short connections from the host itself, by every local path, beside Docker.
  if (!args.includes('--no-local')) process.stdout.write(`\n${(await localPaths({ docker: !args.includes('--no-docker'), mixed: !args.includes('--no-mixed') })).join('\n')}\n`);
}

await main();
