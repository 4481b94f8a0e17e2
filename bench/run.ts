// Benchmark: the container runtime core.
//
//   node dist/bench/run.js [--n 50] [--many 100] [--no-docker]
//
// Runs as root in a throwaway host (network namespace, private mount namespace,
// its own cgroup parent), like the runtime tests. Measures:
//   1. `tsnet run -d -p 8080:80 bb httpd` to the process running, then `tsnet rm -f`;
//   2. MANY containers started one after another (the 10th start against the last),
//      and the host-side memory per running container (the monitor's RSS);
//   3. `tsnet exec C true`;
// and, when Debian's dockerd is installed, the same work with `docker` in the same run
// (dockerd in its own namespace, the same busybox).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TestHost } from '../test/integration/harness.js';
import { busyboxTar } from '../test/runtime/harness.js';
import { summarize, fmt } from './stats.js';
import { haveDocker, startDockerd } from './docker.js';

const args = process.argv.slice(2);
const opt = (name: string, d: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
const N = opt('--n', 50);
const MANY = opt('--many', 100);
const withDocker = !args.includes('--no-docker') && haveDocker();

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
const line = (what: string, xs: number[]) => {
  const s = summarize(xs);
  return `| ${what} | ${fmt(s.median)} | ${fmt(s.p95)} | ${s.n} |`;
};

async function main(): Promise<void> {
  const h = TestHost.create();
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
  const mine = readlinkSync('/proc/self/ns/mnt');
  while (readlinkSync(`/proc/${holder.pid}/ns/mnt`) === mine) await new Promise((r) => setTimeout(r, 10));
  h.mountNs = `/proc/${holder.pid}/ns/mnt`;
  const parent = `tsnet-bench-${randomBytes(3).toString('hex')}`;
  h.extraEnv.TSNET_CGROUP_PARENT = parent;
  const timed = (a: string[]) => {
    const t0 = process.hrtime.bigint();
    const r = h.tsnet(a);
    if (r.code !== 0) throw new Error(`tsnet ${a.join(' ')}: ${r.stderr}`);
    return { t: ms(t0), out: r.stdout.trim() };
  };
  const out: string[] = [];
  try {
    h.ok(['image', 'import', busyboxTar(), 'bb']);
    timed(['run', '-d', '--name', 'warm', 'bb', 'true']);
    h.ok(['rm', '-f', 'warm']);
    // 1. run -d -p, rm -f
    const run: number[] = [];
    const rm: number[] = [];
    for (let i = 0; i < N; i++) {
      run.push(timed(['run', '-d', '--name', `w${i}`, '-p', '8080:80', 'bb', 'httpd', '-f', '-p', '80']).t);
      rm.push(timed(['rm', '-f', `w${i}`]).t);
    }
    // 3. exec
    timed(['run', '-d', '--name', 'ex', 'bb', 'sleep', '100000']);
    const exec: number[] = [];
    for (let i = 0; i < N; i++) exec.push(timed(['exec', 'ex', 'true']).t);
    h.ok(['rm', '-f', 'ex']);
    // 2. many
    const starts: number[] = [];
    for (let i = 0; i < MANY; i++) starts.push(timed(['run', '-d', '--name', `m${i}`, 'bb', 'sleep', '100000']).t);
    const monitors = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'tsnet-monitor' && readFileSync(`/proc/${p}/status`, 'utf8').includes('State:\tS');
      } catch {
        return false;
      }
    }).map(Number);
    const monRss = monitors.map(rss).sort((a, b) => a - b);
    const ids = h.ok(['ps', '-aq']).split('\n').filter(Boolean);
    const t0 = process.hrtime.bigint();
    h.ok(['rm', '-f', ...ids]);
    const rmMany = ms(t0);
    out.push(`tsnet, ${new Date().toISOString()}, N=${N}, MANY=${MANY}`, '', '| tsnet | median ms | p95 ms | n |', '|---|---|---|---|');
    out.push(line('run -d -p (httpd, bridge)', run), line('rm -f', rm), line('exec true', exec), line(`run -d, ${MANY} in a row`, starts));
    out.push('', `start #10: ${fmt(starts[9]!)} ms, start #${MANY}: ${fmt(starts[MANY - 1]!)} ms, median of the last 20: ${fmt(summarize(starts.slice(-20)).median)} ms; rm -f of all ${MANY} in one command: ${fmt(rmMany)} ms`);
    out.push(`monitor RSS over ${monRss.length} running containers: median ${monRss[Math.floor(monRss.length / 2)]} kB, max ${monRss[monRss.length - 1]} kB`);
    if (withDocker) {
      const d = await startDockerd();
      try {
        const dt = (a: string[]) => {
          const t0 = process.hrtime.bigint();
          const r = d.docker(a);
          if (r.status !== 0) throw new Error(`docker ${a.join(' ')}: ${r.stderr}`);
          return ms(t0);
        };
        dt(['run', '-d', '--name', 'warm', 'bb', 'true']);
        dt(['rm', '-f', 'warm']);
        const drun: number[] = [];
        const drm: number[] = [];
        for (let i = 0; i < N; i++) {
          drun.push(dt(['run', '-d', '--name', `w${i}`, '-p', '8080:80', 'bb', 'httpd', '-f', '-p', '80']));
          drm.push(dt(['rm', '-f', `w${i}`]));
        }
        dt(['run', '-d', '--name', 'ex', 'bb', 'sleep', '100000']);
        const dexec: number[] = [];
        for (let i = 0; i < N; i++) dexec.push(dt(['exec', 'ex', 'true']));
        const shims = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
          try {
            return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('containerd-shim');
          } catch {
            return false;
          }
        }).map((p) => rss(Number(p)));
        dt(['rm', '-f', 'ex']);
        out.push('', `docker (dockerd 20.10), same run`, '', '| docker | median ms | p95 ms | n |', '|---|---|---|---|');
        out.push(line('run -d -p (httpd, bridge)', drun), line('rm -f', drm), line('exec true', dexec));
        const r = (a: number[], b: number[]) => (summarize(a).median / summarize(b).median).toFixed(2);
        out.push('', `ratios docker/tsnet (above 1 = tsnet faster): run -d -p ${r(drun, run)}x, rm -f ${r(drm, rm)}x, exec ${r(dexec, exec)}x; containerd-shim RSS ${shims.join(', ')} kB`);
      } finally {
        await d.stop();
      }
    }
  } finally {
    const ids = h.tsnet(['ps', '-aq']).stdout.split('\n').filter(Boolean);
    if (ids.length) h.tsnet(['rm', '-f', ...ids]);
    spawnSync('sh', ['-c', `rmdir /sys/fs/cgroup/*/${parent} 2>/dev/null; true`]);
    holder.kill('SIGKILL');
    h.destroy();
  }
  console.log(out.join('\n'));
}

await main();
