// A throwaway host for runtime tests: the network namespace of a TestHost, plus a
// private mount namespace (held by a sleeping process) that the CLI, the monitors
// and the containers' rootfs mounts live in, and a cgroup parent of the test's
// own. destroy() removes the containers, the cgroups and both namespaces.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TestHost, pollUntil, skipReason, missingTools } from '../integration/harness.js';

export { pollUntil };

/** Why runtime tests cannot run here, or false. */
export function runtimeSkip(...tools: string[]): string | false {
  const base = skipReason('unshare', 'tar', ...tools);
  if (base) return base;
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed (CI installs it)';
  return missingTools('curl').length ? 'curl is missing (CI installs it)' : false;
}

/** A rootfs tarball of busybox-static (every applet a symlink) with passwd/group, made once per process. */
let tarball: string | undefined;
export function busyboxTar(): string {
  if (tarball) return tarball;
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-bb-'));
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'tmp'), { mode: 0o1777 });
  writeFileSync(join(root, 'bin', 'busybox'), readFileSync('/bin/busybox'), { mode: 0o755 });
  const applets = spawnSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n');
  const out = join(dir, 'busybox.tar');
  const r = spawnSync('tar', ['-C', root, '--numeric-owner', '-cf', out, '.']);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  tarball = out;
  return out;
}

export class RuntimeHost {
  readonly cgroupParent = `tsnet-test-${randomBytes(4).toString('hex')}`;
  private constructor(readonly h: TestHost, private readonly holder: ChildProcess) {}

  static async create(opts: { image?: boolean } = {}): Promise<RuntimeHost> {
    const h = TestHost.create();
    const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
    const mine = readlinkSync('/proc/self/ns/mnt');
    const ready = await pollUntil(() => {
      try {
        return readlinkSync(`/proc/${holder.pid}/ns/mnt`) !== mine;
      } catch {
        return false;
      }
    });
    if (!ready) throw new Error('the mount namespace holder did not start');
    h.mountNs = `/proc/${holder.pid}/ns/mnt`;
    const r = new RuntimeHost(h, holder);
    h.extraEnv.TSNET_CGROUP_PARENT = r.cgroupParent;
    if (opts.image !== false) h.ok(['image', 'import', busyboxTar(), 'bb']);
    return r;
  }

  tsnet(args: string[]) {
    return this.h.tsnet(args);
  }
  ok(args: string[]): string {
    return this.h.ok(args);
  }
  /** A command in the host (its network and mount namespaces). */
  sh(...argv: string[]) {
    return this.h.sh(...argv);
  }
  inspect(name: string): any {
    return JSON.parse(this.ok(['inspect', name]))[0];
  }

  /** The cgroup directories of this test (every v1 hierarchy, or v2). */
  cgroupDirs(): string[] {
    const out: string[] = [];
    for (const d of readdirSync('/sys/fs/cgroup')) {
      const p = join('/sys/fs/cgroup', d, this.cgroupParent);
      if (existsSync(p)) out.push(p);
    }
    if (existsSync(join('/sys/fs/cgroup', this.cgroupParent))) out.push(join('/sys/fs/cgroup', this.cgroupParent));
    return out;
  }

  /** Container cgroups left under this test's parent. */
  leftoverCgroups(): string[] {
    return this.cgroupDirs().flatMap((d) => readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name)));
  }

  /** Mounts of the private namespace under this host's state root. */
  mounts(): string[] {
    return readFileSync(`/proc/${this.holder.pid}/mountinfo`, 'utf8').split('\n').filter((l) => l.includes(this.h.dir)).map((l) => l.split(' ')[4]!);
  }

  destroy(): void {
    const ids = this.tsnet(['ps', '-aq', '--no-trunc']).stdout.split('\n').filter(Boolean);
    if (ids.length) this.tsnet(['rm', '-f', ...ids]);
    for (const d of this.cgroupDirs()) {
      for (const sub of readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory())) {
        for (const pid of readFileSync(join(d, sub.name, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) spawnSync('kill', ['-9', pid]);
        spawnSync('rmdir', [join(d, sub.name)]);
      }
      spawnSync('rmdir', [d]);
    }
    this.holder.kill('SIGKILL');
    this.h.destroy();
  }
}

export async function withRuntime<T>(body: (r: RuntimeHost) => Promise<T> | T, opts: { image?: boolean } = {}): Promise<T> {
  const r = await RuntimeHost.create(opts);
  try {
    return await body(r);
  } finally {
    r.destroy();
  }
}
