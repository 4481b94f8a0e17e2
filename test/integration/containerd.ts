// A private containerd for tests: it and every ctr run inside a throwaway "host"
// network namespace and a private mount namespace where a tmpfs covers
// /run/containerd (shim sockets, runtime state) and the test's directories may be
// bound over host paths (CNI's /etc/cni/net.d and /opt/cni/bin); its root and
// socket live in the test's directory. stop() ends the tasks through containerd,
// then containerd, and removes the cgroups the runtime made for the namespace and
// the mount points it had to create.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TestHost } from './harness.js';

export interface Containerd {
  /** The containerd namespace of this test. */
  ns: string;
  ctr(...a: string[]): { status: number | null; stdout: string; stderr: string };
  ctrArgs(...a: string[]): string[];
  /** containerd's stderr (and anything a test appends). */
  log: { text: string };
  stop(): Promise<void>;
}

/** Creates the missing directories of path; returns them deepest first, for removal. */
function mkdirsMissing(path: string): string[] {
  const made: string[] = [];
  let p = path;
  while (!existsSync(p)) {
    made.push(p);
    p = join(p, '..');
  }
  mkdirSync(path, { recursive: true });
  return made;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startContainerd(h: TestHost, dir: string, opts: { binds?: Array<[string, string]> } = {}): Promise<Containerd> {
  const ns = `tsnet-t-${randomBytes(3).toString('hex')}`;
  const binds = opts.binds ?? [];
  const made = [...binds.flatMap(([, target]) => mkdirsMissing(target)), ...mkdirsMissing('/run/containerd')];
  writeFileSync(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "/run/containerd/${ns}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${dir}/containerd.sock"`,
      '[ttrpc]',
      `  address = "${dir}/containerd.ttrpc.sock"`,
      '',
    ].join('\n'),
  );
  const setup = ['set -e', 'mount -t tmpfs tsnet-test /run/containerd', ...binds.map(([src, target]) => `mount --bind ${src} ${target}`), `exec nsenter --net=${h.nsPath} containerd --config ${dir}/config.toml`].join('\n');
  const containerd: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', setup], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = { text: '' };
  containerd.stderr!.on('data', (d: Buffer) => (log.text += d.toString()));
  const enter = ['nsenter', `--mount=/proc/${containerd.pid}/ns/mnt`, `--net=${h.nsPath}`, '--'];
  const ctrArgs = (...a: string[]) => [...enter, 'ctr', '-a', `${dir}/containerd.sock`, '-n', ns, ...a];
  const ctr = (...a: string[]) => spawnSync(ctrArgs(...a)[0]!, ctrArgs(...a).slice(1), { encoding: 'utf8', timeout: 20_000 });
  const stop = async () => {
    if (containerd.exitCode === null) {
      // End the tasks through containerd (killing it would leave the shims and their containers running), then containerd itself.
      for (const id of ctr('task', 'ls', '-q').stdout.split('\n').filter(Boolean)) ctr('task', 'rm', '-f', id);
      for (const id of ctr('containers', 'ls', '-q').stdout.split('\n').filter(Boolean)) ctr('containers', 'rm', id);
      containerd.kill('SIGTERM');
      await new Promise((r) => containerd.on('exit', r));
    }
    for (const root of readdirSync('/sys/fs/cgroup')) {
      const p = join('/sys/fs/cgroup', root, ns);
      if (existsSync(p)) {
        try {
          rmdirSync(p);
        } catch {
          /* a cgroup still in use is reported by the next run's leftovers check */
        }
      }
    }
    for (const p of made) {
      try {
        rmdirSync(p);
      } catch {
        /* not empty: someone else uses it now */
      }
    }
  };
  for (let i = 0; i < 100 && !log.text.includes('containerd successfully booted'); i++) await sleep(100);
  if (!log.text.includes('containerd successfully booted')) {
    await stop();
    throw new Error(`containerd did not start:\n${log.text}`);
  }
  return { ns, ctr, ctrArgs, log, stop };
}
