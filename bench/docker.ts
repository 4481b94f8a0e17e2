// A dockerd for side-by-side benchmarks: Debian's dockerd started in a throwaway
// network namespace of its own, with its own data root, exec root and socket, and
// a busybox image made from busybox-static (no registry needed). stop() removes
// the daemon, its mounts and the namespace.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Dockerd {
  ns: string;
  nsPath: string;
  sock: string;
  dir: string;
  docker(args: string[]): { status: number | null; stdout: string; stderr: string };
  stop(): Promise<void>;
}

export const haveDocker = () => existsSync('/usr/sbin/dockerd') && existsSync('/usr/bin/docker');

export async function startDockerd(opts: { setupNs?: (ns: string) => void } = {}): Promise<Dockerd> {
  const ns = `tsnet-bd-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bd-'));
  const sock = join(dir, 'docker.sock');
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  opts.setupNs?.(ns);
  const daemon = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', 'dockerd', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'pid'), '-H', `unix://${sock}`], { stdio: ['ignore', 'ignore', 'ignore'] });
  const docker = (a: string[]) => {
    const r = spawnSync('/usr/bin/docker', ['-H', `unix://${sock}`, ...a], { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const stop = async () => {
    daemon.kill('SIGTERM');
    // dockerd waits for its containers (10 s for one that ignores SIGTERM): give it 20 s, then kill it.
    const killer = setTimeout(() => daemon.kill('SIGKILL'), 20_000);
    await new Promise((r) => (daemon.exitCode !== null || daemon.signalCode !== null ? r(null) : daemon.once('exit', r)));
    clearTimeout(killer);
    spawnSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 100 && docker(['version']).status !== 0; i++) await new Promise((r) => setTimeout(r, 200));
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
    for (const a of ['sh', 'sleep', 'httpd', 'true']) symlinkSync('busybox', join(rootfs, 'bin', a));
    execFileSync('sh', ['-c', `tar -C ${rootfs} -c . | /usr/bin/docker -H unix://${sock} import - bb`], { stdio: 'ignore' });
  } catch (err) {
    await stop();
    throw err;
  }
  return { ns, nsPath: `/run/netns/${ns}`, sock, dir, docker, stop };
}
