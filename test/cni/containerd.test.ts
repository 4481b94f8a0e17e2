// A real orchestrator: containerd (with runc) runs busybox containers with
// `ctr run --cni`, and ctr drives our installed plugins through libcni.
//
// Nothing here reaches the real host's network or CNI set-up:
// - containerd and every ctr run inside a throwaway "host" network namespace, so
//   the bridge, veths and NAT rules land there;
// - they also run in a private mount namespace where a tmpfs covers
//   /run/containerd (shim sockets, runc state) and our test directories are bound
//   over /etc/cni/net.d and /opt/cni/bin, the only places ctr looks for CNI;
// - containerd's root, socket and the IPAM data live in a temporary directory.
// The mount points are created only if missing and removed again afterwards, and
// the cgroups runc leaves for the containerd namespace are removed.
//
// ctr has no -p: the published port comes from a static runtimeConfig in the
// conflist, which libcni passes through unchanged when the runtime sends no
// capability arguments. Each `ctr run --rm` keeps the conflist it loaded at start
// and runs DEL with it when its task exits, so container A (httpd, with a port) and
// container B (client, no port) use two versions of the same network's conflist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { startContainerd, type Containerd } from '../integration/containerd.js';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestHost, installCni, skipReason } from '../integration/harness.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
const skip = skipReason('containerd', 'ctr', 'runc', 'unshare') || (BUSYBOX ? false : 'missing busybox (CI installs busybox-static)');
const SUBNET = '10.77.0';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rootfs(dir: string, page?: string): string {
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'www']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX!, join(dir, 'bin', 'busybox'));
  symlinkSync('busybox', join(dir, 'bin', 'sh'));
  if (page) writeFileSync(join(dir, 'www', 'index.html'), page);
  return dir;
}

test('containerd: ctr run --cni with a tsnet conflist; address, container to container, published port; removal leaves nothing', { skip, timeout: 120_000 }, async () => {
  const h = TestHost.create();
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-ctr-'));
  const children: ChildProcess[] = [];
  let cd: Containerd | undefined;
  try {
    const bin = join(dir, 'bin');
    const conf = join(dir, 'conf');
    mkdirSync(conf);
    const inst = installCni(bin, join(dir, 'run'));
    assert.equal(inst.code, 0, inst.stderr);
    cd = await startContainerd(h, dir, { binds: [[conf, '/etc/cni/net.d'], [bin, '/opt/cni/bin']] });
    const { ctr, ctrArgs, log: logRef } = cd;
    const log = { append: (t: string) => (logRef.text += t) };
    const taskPid = async (id: string) => {
      for (let i = 0; i < 100; i++) {
        const m = new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm').exec(ctr('task', 'ls').stdout);
        if (m) return Number(m[1]);
        await sleep(100);
      }
      throw new Error(`task ${id} did not start`);
    };
    const run = (id: string, root: string, ...cmd: string[]) => {
      const argv = ctrArgs('run', '--rm', '--null-io', '--cni', '--rootfs', root, id, ...cmd);
      const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      c.stderr!.on('data', (d: Buffer) => log.append(`[ctr ${id}] ${d.toString()}`));
      children.push(c);
      return c;
    };
    const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.on('exit', (code) => r(code))));
    const ipamFiles = () => {
      const d = join(dir, 'ipam', 'ctrnet');
      return existsSync(d) ? readdirSync(d).filter((f) => /^\d/.test(f)) : [];
    };

    // The reference conflist for bridge + portmap with only the types changed.
    const bridge = {
      type: 'tsnet-bridge', bridge: 'tsctr0', isGateway: true, ipMasq: true, hairpinMode: true,
      ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: `${SUBNET}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(dir, 'ipam') },
    };
    const portmap = { type: 'tsnet-portmap', capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] } };
    const conflist = (plugins: unknown[]) => writeFileSync(join(conf, '10-tsnet.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'ctrnet', plugins }));

    conflist([bridge, portmap]);
    const a = run('a', rootfs(join(dir, 'rootA'), 'hello from A\n'), '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/www');
    const pidA = await taskPid('a');
    conflist([bridge]);
    const b = run('b', rootfs(join(dir, 'rootB')), '/bin/busybox', 'sleep', '600');
    const pidB = await taskPid('b');

    const addrOf = (pid: number) => /inet (\d+\.\d+\.\d+\.\d+)\/24/.exec(h.inNs(`/proc/${pid}/ns/net`, 'ip', '-4', '-o', 'addr', 'show', 'eth0').stdout)?.[1];
    const ipA = addrOf(pidA);
    const ipB = addrOf(pidB);
    assert.ok(ipA?.startsWith(`${SUBNET}.`) && ipB?.startsWith(`${SUBNET}.`) && ipA !== ipB, `addresses ${ipA} ${ipB}`);
    assert.deepEqual(ipamFiles().sort(), [ipA, ipB].sort());
    assert.match(h.inNs(`/proc/${pidB}/ns/net`, 'ip', 'route').stdout, new RegExp(`default via ${SUBNET}\\.1 dev eth0`));

    // Container to container, run inside B by containerd.
    const fetch = ctr('task', 'exec', '--exec-id', 'fetch1', 'b', '/bin/busybox', 'wget', '-q', '-O', '-', `http://${ipA}/`);
    assert.equal(fetch.stdout, 'hello from A\n', `B reaches A: ${fetch.status} ${fetch.stderr}`);
    // The published port: from another machine through the host's address, and from the host itself.
    const outside = h.addOutside();
    // (This busybox's wget crashes on -T; the callers time it out instead.)
    const wget = (ns: string, url: string) => spawnSync('nsenter', [`--net=${ns}`, '--', BUSYBOX!, 'wget', '-q', '-O', '-', url], { encoding: 'utf8', timeout: 5000 }).stdout;
    assert.equal(wget(outside, 'http://198.51.100.1:8080/'), 'hello from A\n', 'published port from outside');
    assert.equal(wget(h.nsPath, 'http://198.51.100.1:8080/'), 'hello from A\n', 'published port from the host');
    assert.equal(ctr('task', 'exec', '--exec-id', 'fetch2', 'b', '/bin/busybox', 'wget', '-q', '-O', '-', `http://${SUBNET}.1:8080/`).stdout, 'hello from A\n', 'published port from another container');

    // Removal: the tasks end, each ctr runs DEL with its conflist and deletes its container.
    for (const [id, c] of [['b', b], ['a', a]] as const) {
      assert.equal(ctr('task', 'kill', '-s', 'KILL', id).status, 0);
      await exited(c);
    }
    assert.equal(ctr('containers', 'ls', '-q').stdout.trim(), '', 'containers removed');
    assert.deepEqual(ipamFiles(), [], 'addresses released');
    assert.doesNotMatch(h.sh('ip', '-o', 'link').stdout, /tsc[0-9a-f]{12}/, 'no veth left');
    const nat = h.sh('iptables-save', '-t', 'nat').stdout;
    assert.doesNotMatch(nat, /--dport 8080|tsnet-pm:|tsnet-cni:ctrnet:/, `no rule left:\n${nat}`);
    assert.equal(wget(outside, 'http://198.51.100.1:8080/'), '', 'the port is gone');
    assert.doesNotMatch(logRef.text, /level=error/, logRef.text);
  } finally {
    await cd?.stop();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    h.destroy();
  }
});
