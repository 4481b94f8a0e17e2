// Benchmark: the OCI runtime's hot path beside runc and crun (Debian's), on the
// same bundle in the same run.
//
//   node dist/bench/oci.js [--n 50]
//
// For each runtime (each in one private mount namespace, see below): `run -d` of a busybox bundle (sleep) to the command returning
// with the process running, `exec` of `true` in it, then `delete -f`; median/p95
// over N. Every container gets new namespaces (so nothing lands in the host's
// network or mounts), its cgroup under a bench parent that is removed at the end,
// and each runtime a state root of its own in a temp directory.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { busyboxTar } from '../test/runtime/harness.js';
import { summarize, fmt } from './stats.js';

const args = process.argv.slice(2);
const N = args.includes('--n') ? Number(args[args.indexOf('--n') + 1]) : 50;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const which = (b: string) => spawnSync('sh', ['-c', `command -v ${b}`], { encoding: 'utf8' }).stdout.trim();

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bench-oci-'));
  const parent = `tsnet-bench-oci-${randomBytes(3).toString('hex')}`;
  const bundle = join(dir, 'bundle');
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  spawnSync('tar', ['-C', join(bundle, 'rootfs'), '-xf', busyboxTar()]);
  const tsnetRunc = [process.execPath, join(process.cwd(), 'bin', 'tsnet-runc.js')];
  spawnSync(tsnetRunc[0]!, [...tsnetRunc.slice(1), 'spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['sleep', '300'];
  spec.ociVersion = '1.0.2-dev'; // what runc spec writes; Debian's crun knows no later one
  const runtimes: Array<{ name: string; argv: string[] }> = [
    { name: 'tsnet runtime', argv: tsnetRunc },
    // The native client of a warm server (started by its first call, warmed below).
    { name: 'tsnet-runc', argv: [join(process.cwd(), 'native', 'build', 'Release', 'tsnet-runc')] },
  ];
  if (which('runc')) runtimes.push({ name: 'runc', argv: [which('runc')] });
  if (which('crun')) runtimes.push({ name: 'crun', argv: [which('crun')] });
  // Debian's crun refuses this VM's hybrid layout (controllers on the v2 mount): every runtime runs
  // in a private mount namespace without /sys/fs/cgroup/unified, so all see plain cgroup v1 and pay
  // the same nsenter.
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec sleep infinity'], { stdio: 'ignore' });
  const mntns = `/proc/${holder.pid}/ns/mnt`;
  for (let i = 0; i < 500; i++) {
    try {
      if (!readFileSync(`/proc/${holder.pid}/mountinfo`, 'utf8').includes('/sys/fs/cgroup/unified') && readFileSync(`/proc/${holder.pid}/cmdline`, 'utf8').startsWith('sleep')) break;
    } catch {
      /* not yet */
    }
    spawnSync('sleep', ['0.01']);
  }
  const rows: string[] = [];
  try {
    for (const rt of runtimes) {
      const root = join(dir, `state-${rt.name.replace(/\W/g, '')}`);
      // stderr through a file: a container keeps the stdio it was started with (a pipe to us would not end).
      const errFile = join(dir, 'stderr');
      const go = (a: string[]) => {
        const fd = openSync(errFile, 'w');
        const t0 = process.hrtime.bigint();
        const r = spawnSync('nsenter', [`--mount=${mntns}`, '--', ...rt.argv, '--root', root, ...a], { stdio: ['ignore', 'ignore', fd] });
        const t = ms(t0);
        closeSync(fd);
        if (r.status !== 0) throw new Error(`${rt.name} ${a.join(' ')}: ${readFileSync(errFile, 'utf8')}`);
        return t;
      };
      if (rt.name === 'tsnet-runc') {
        mkdirSync(root, { recursive: true });
        for (let i = 0; i < 200 && !existsSync(join(root, '.tsnet-runc.sock')); i++) {
          go(['list']);
          spawnSync('sleep', ['0.05']);
        }
        for (let i = 0; i < 20; i++) go(['list']);
      }
      const run: number[] = [];
      const exec: number[] = [];
      const del: number[] = [];
      for (let i = -1; i < N; i++) {
        const id = `b${i + 1}`;
        spec.linux.cgroupsPath = `/${parent}/${id}`;
        writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
        const tr = go(['run', '-d', '--bundle', bundle, id]);
        const te = go(['exec', id, 'true']);
        const td = go(['delete', '-f', id]);
        if (i < 0) continue; // the first one warms the page cache
        run.push(tr);
        exec.push(te);
        del.push(td);
      }
      for (const [what, xs] of [['run -d', run], ['exec true', exec], ['delete -f', del]] as const) {
        const s = summarize(xs);
        rows.push(`| ${rt.name} | ${what} | ${fmt(s.median)} | ${fmt(s.p95)} | ${s.n} |`);
      }
    }
  } finally {
    spawnSync('pkill', ['-f', `--root ${join(dir, 'state-tsnetrunc')} --serve`]);
    holder.kill('SIGKILL');
    for (const c of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
      const p = join('/sys/fs/cgroup', c, parent);
      if (!existsSync(p)) continue;
      for (const sub of readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory())) rmdirSync(join(p, sub.name));
      rmdirSync(p);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (name: string, what: string) => Number(rows.find((r) => r.startsWith(`| ${name} | ${what} |`))?.split('|')[3]);
  console.log(`OCI runtime, ${N} containers each, ${new Date().toISOString()}\n`);
  console.log('| runtime | operation | median ms | p95 ms | n |\n|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  for (const ours of ['tsnet runtime', 'tsnet-runc']) {
    for (const peer of runtimes.slice(2)) {
      for (const what of ['run -d', 'exec true', 'delete -f']) {
        console.log(`${what}: ${ours}/${peer.name} = ${(med(ours, what) / med(peer.name, what)).toFixed(2)}`);
      }
    }
  }
}

main();
