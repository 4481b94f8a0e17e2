// Benchmark: short HTTP connections to a published port from the host itself, by
// every local path, against a direct connection and a remote client, for tsnet
// and (side by side, same run) Docker.
//
//   node dist/bench/local-paths.js [--seconds 3] [--rounds 3] [--no-docker] [--mixed]
//
// wrk -t2 -c8 -H 'Connection: close' against nginx (one worker, `return 200`,
// keepalive off: the server closes each connection). Paths:
//   direct          the container's address
//   127.0.0.1       the published port on loopback
//   gateway         the network's gateway address (the bridge's own address)
//   [::1]           IPv6 loopback
//   host address    another address of the host (an uplink veth)
//   remote          a client in another namespace, through the uplink
// Each path has a container of its own: a short connection leaves a TIME_WAIT
// socket in the container for a minute, so paths aimed at one container would
// measure each other's leftovers (--mixed adds that case: every path against one
// container, interleaved, for both).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt } from './stats.js';
import { haveDocker, startDockerd, type Dockerd } from './docker.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, d: number) => Number(args[args.indexOf(name) + 1] ?? d) || d;
const SECONDS = opt('--seconds', 3);
const ROUNDS = opt('--rounds', 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const children: ChildProcess[] = [];
const must = (argv: string[], env?: NodeJS.ProcessEnv) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/** Joins a host namespace to an "outside" one: host 198.51.100.1 on uplink0, outside 198.51.100.2. */
function uplink(hostNs: string, outNs: string): void {
  must(['ip', 'netns', 'add', outNs]);
  must(['ip', '-n', outNs, 'link', 'set', 'lo', 'up']);
  must(['ip', '-n', hostNs, 'link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outNs]);
  must(['ip', '-n', hostNs, 'addr', 'add', '198.51.100.1/24', 'dev', 'uplink0']);
  must(['ip', '-n', hostNs, 'link', 'set', 'uplink0', 'up']);
  must(['ip', '-n', outNs, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0']);
  must(['ip', '-n', outNs, 'link', 'set', 'eth0', 'up']);
  must(['ip', '-n', outNs, 'route', 'add', 'default', 'via', '198.51.100.1']);
}

/** nginx in a namespace: one worker, no keepalive, 200 for everything. */
function nginx(dir: string, name: string, nsPath: string): void {
  const conf = join(dir, `nginx-${name}.conf`);
  writeFileSync(
    conf,
    `master_process off; worker_processes 1; daemon off; pid ${dir}/nginx-${name}.pid; error_log ${dir}/nginx-${name}.log;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 0; server { listen 80 backlog=4096; listen [::]:80 backlog=4096; location / { return 200 "ok\\n"; } } }\n`,
  );
  children.push(spawn('nsenter', [`--net=${nsPath}`, '--', 'nginx', '-c', conf, '-p', dir], { stdio: 'ignore' }));
}

function wrk(nsPath: string, url: string): number {
  const out = must(['nsenter', `--net=${nsPath}`, '--', 'wrk', '-t2', '-c8', `-d${SECONDS}s`, '-H', 'Connection: close', url]);
  const errors = /Socket errors: (.*)/.exec(out)?.[1];
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  if (errors) process.stderr.write(`${url}: socket errors ${errors}\n`);
  return rate;
}

async function waitHttp(nsPath: string, url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (spawnSync('nsenter', [`--net=${nsPath}`, '--', 'curl', '-sf', '-o', '/dev/null', '--max-time', '1', url]).status === 0) return;
    await sleep(100);
  }
  throw new Error(`${url} does not answer`);
}

interface Path {
  label: string;
  /** Client namespace and URL. */
  from: string;
  url: string;
}

interface Stack {
  name: string;
  paths: Path[];
  /** The paths again, all against one container (--mixed). */
  mixed: Path[];
  stop(): Promise<void>;
}

const PATHS = ['direct', '127.0.0.1', 'gateway address', '[::1]', 'another host address', 'remote client'] as const;

async function tsnetStack(): Promise<Stack> {
  const ns = `tsnet-bl-${randomBytes(3).toString('hex')}`;
  const nsPath = `/run/netns/${ns}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bl-'));
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: '', TSNET_ROOT: join(dir, 'root'), TSNET_RUN: join(dir, 'run'), TSNET_FIREWALL: 'iptables' };
  const tsnet = (...a: string[]) => must(['nsenter', `--net=${nsPath}`, '--', process.execPath, join(REPO, 'bin', 'tsnet.js'), ...a], env).trim();
  must(['ip', 'netns', 'add', ns]);
  must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  uplink(ns, `${ns}-o`);
  const ips: string[] = [];
  for (let i = 0; i < PATHS.length + 1; i++) {
    tsnet('sandbox', 'create', '-p', `${18080 + i}:80`, `s${i}`);
    ips.push(JSON.parse(tsnet('sandbox', 'inspect', `s${i}`))[0].Networks.bridge.IPAddress);
    nginx(dir, `s${i}`, join(dir, 'run', 'netns', `s${i}`));
  }
  const gw = JSON.parse(tsnet('network', 'inspect', 'bridge'))[0].IPAM.Config[0].Gateway as string;
  const paths = pathsFor(nsPath, `${nsPath}-o`, ips, gw, (i) => 18080 + i);
  for (const p of paths) await waitHttp(p.from, p.url);
  return {
    name: 'tsnet',
    paths,
    mixed: pathsFor(nsPath, `${nsPath}-o`, ips.map(() => ips[PATHS.length]!), gw, () => 18080 + PATHS.length),
    stop: async () => {
      for (const f of ['proxy.keeper.pid', 'proxy.sock.pid']) {
        try {
          process.kill(Number(readFileSync(join(dir, 'run', f), 'utf8')), 'SIGKILL');
        } catch {
          /* not running */
        }
      }
      const pins = join(dir, 'run', 'netns');
      if (existsSync(pins)) for (const p of readdirSync(pins)) spawnSync('umount', ['-l', join(pins, p)]);
      spawnSync('ip', ['netns', 'del', `${ns}-o`]);
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function dockerStack(): Promise<Stack> {
  let d: Dockerd | undefined;
  d = await startDockerd({ setupNs: (ns) => uplink(ns, `${ns}-o`) });
  const ips: string[] = [];
  for (let i = 0; i < PATHS.length + 1; i++) {
    const r = d.docker(['run', '-d', '--name', `c${i}`, '-p', `${28080 + i}:80`, 'bb', 'sleep', '3600']);
    if (r.status !== 0) throw new Error(`docker run: ${r.stderr}`);
    const pid = d.docker(['inspect', '-f', '{{.State.Pid}}', `c${i}`]).stdout.trim();
    ips.push(d.docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', `c${i}`]).stdout.trim());
    nginx(d.dir, `c${i}`, `/proc/${pid}/ns/net`);
  }
  const gw = d.docker(['inspect', '-f', '{{.NetworkSettings.Gateway}}', 'c0']).stdout.trim();
  const paths = pathsFor(d.nsPath, `${d.nsPath}-o`, ips, gw, (i) => 28080 + i);
  for (const p of paths) await waitHttp(p.from, p.url);
  return {
    name: 'Docker',
    paths,
    mixed: pathsFor(d.nsPath, `${d.nsPath}-o`, ips.map(() => ips[PATHS.length]!), gw, () => 28080 + PATHS.length),
    stop: async () => {
      const rm = d!.docker(['rm', '-f', ...ips.map((_, i) => `c${i}`)]);
      if (rm.status !== 0) process.stderr.write(`docker rm: ${rm.stderr}\n`);
      spawnSync('ip', ['netns', 'del', `${d!.ns}-o`]);
      await d!.stop();
    },
  };
}

/** Path i uses container i (its address ips[i], its host port port(i)). */
function pathsFor(host: string, outside: string, ips: string[], gw: string, port: (i: number) => number): Path[] {
  return [
    { label: PATHS[0], from: host, url: `http://${ips[0]}:80/` },
    { label: PATHS[1], from: host, url: `http://127.0.0.1:${port(1)}/` },
    { label: PATHS[2], from: host, url: `http://${gw}:${port(2)}/` },
    { label: PATHS[3], from: host, url: `http://[::1]:${port(3)}/` },
    { label: PATHS[4], from: host, url: `http://198.51.100.1:${port(4)}/` },
    { label: PATHS[5], from: outside, url: `http://198.51.100.1:${port(5)}/` },
  ];
}

export async function localPaths(opts: { docker: boolean; mixed: boolean }): Promise<string[]> {
  for (const tool of ['wrk', 'nginx', 'curl']) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is needed (apt-get install ${tool})`);
  const stacks: Stack[] = [];
  const out: string[] = [];
  try {
    stacks.push(await tsnetStack());
    if (opts.docker && haveDocker()) stacks.push(await dockerStack());
    const measure = async (which: 'paths' | 'mixed') => {
      const samples = new Map<string, number[]>();
      // Rounds interleave paths and stacks, so a noisy moment of the machine hits them all alike.
      for (let r = 0; r < ROUNDS; r++) {
        for (let i = 0; i < PATHS.length; i++) {
          for (const s of stacks) {
            const p = s[which][i]!;
            const key = `${s.name}/${p.label}`;
            samples.set(key, [...(samples.get(key) ?? []), wrk(p.from, p.url)]);
          }
        }
      }
      return samples;
    };
    const table = (title: string, samples: Map<string, number[]>) => {
      const names = stacks.map((s) => s.name);
      out.push('', title, '', `| path | ${names.map((n) => `${n} req/s (each round) | ${n} / its direct`).join(' | ')}${names.length > 1 ? ' | tsnet / Docker' : ''} |`, `|---|${names.map(() => '---|---|').join('')}${names.length > 1 ? '---|' : ''}`);
      for (const label of PATHS) {
        const cells: string[] = [];
        const med: number[] = [];
        for (const n of names) {
          const xs = samples.get(`${n}/${label}`)!;
          const direct = median(samples.get(`${n}/direct`)!);
          med.push(median(xs));
          cells.push(`${median(xs).toFixed(0)} (${xs.map((x) => x.toFixed(0)).join(', ')})`, `${fmt(median(xs) / direct)}x`);
        }
        out.push(`| ${label} | ${cells.join(' | ')}${names.length > 1 ? ` | ${fmt(med[0]! / med[1]!)}x` : ''} |`);
      }
    };
    out.push(`local paths to a published port, wrk -t2 -c8 -H 'Connection: close' against nginx, ${SECONDS} s per measurement, median of ${ROUNDS} rounds (${new Date().toISOString()})`);
    table('Each path to a container of its own:', await measure('paths'));
    if (opts.mixed) table('Every path to one container, interleaved (each measures the TIME_WAIT leftovers of the others):', await measure('mixed'));
  } finally {
    for (const c of children) c.kill('SIGKILL');
    for (const s of stacks) await s.stop();
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  process.stdout.write(`${(await localPaths({ docker: !args.includes('--no-docker'), mixed: args.includes('--mixed') })).join('\n')}\n`);
}
