// The kernel seam's contract: the same cases run on the in-memory fake and on the
// real kernel (in throwaway namespaces of the test's own, never the host's), so the
// fake the unit tests rely on cannot drift from what the kernel does. A case
// states what the kernel does; both implementations must do it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Kernel } from '../../src/system/kernel.js';
import { FakeKernel } from '../../src/system/fake/index.js';
import { createRealSystem } from '../../src/system/real/index.js';
import { silentLogger } from '../../src/log.js';
import { SyscallError } from '../../src/errors.js';
import { isRoot } from '../integration/harness.js';

interface Subject {
  k: Kernel;
  /** A fresh, empty directory of the test's own (on disk for the real kernel, in memory for the fake). */
  dir: string;
  /** A fresh namespace: its pin path and an open fd. */
  ns(): { path: string; fd: number };
  done(): void;
}

/** Whether this kernel's bridges filter VLANs (tried in a throwaway namespace). */
function realVlanFiltering(): boolean {
  const n = `tsnet-t-c${randomBytes(3).toString('hex')}`;
  spawnSync('ip', ['netns', 'add', n]);
  try {
    return spawnSync('ip', ['-n', n, 'link', 'add', 'brv', 'type', 'bridge', 'vlan_filtering', '1']).status === 0;
  } finally {
    spawnSync('ip', ['netns', 'del', n]);
  }
}

function subject(kind: 'fake' | 'real'): Subject {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-contract-'));
  const k: Kernel = kind === 'fake' ? new FakeKernel({ bridgeVlanFiltering: isRoot ? realVlanFiltering() : false }) : createRealSystem(silentLogger());
  const made: Array<{ path: string; fd: number }> = [];
  if (kind === 'fake') k.files.mkdir(dir);
  return {
    k,
    dir,
    ns: () => {
      const path = join(dir, `ns${made.length}`);
      k.netns.create(path);
      const x = { path, fd: k.netns.open(path) };
      made.push(x);
      return x;
    },
    done: () => {
      for (const x of made) {
        k.netns.close(x.fd);
        k.netns.remove(x.path);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const errno = (e: unknown) => (e instanceof SyscallError ? e.errno : `not a SyscallError: ${String(e)}`);
const kinds = ['fake', 'real'] as const;
const skipFor = (kind: (typeof kinds)[number]) => (kind === 'real' && !isRoot ? 'needs root (network namespaces)' : false);

for (const kind of kinds) {
  test(`kernel contract (${kind}): links, veth peers born in another namespace, deletion takes the peer`, { skip: skipFor(kind) }, async () => {
    const s = subject(kind);
    try {
      const a = s.ns();
      const b = s.ns();
      const nl = s.k.netlink(a.fd);
      const inner = s.k.netlink(b.fd);
      try {
        const br = await nl.createBridge({ name: 'br0', mtu: 1400, alias: 'tsnet:test:br' });
        assert.equal(br.kind, 'bridge');
        assert.equal(br.alias, 'tsnet:test:br');
        await assert.rejects(nl.createBridge({ name: 'br0' }), (e) => errno(e) === 'EEXIST');
        const veth = await nl.createVeth({ name: 'tsv0', peerName: 'eth0', peerNetnsFd: b.fd, mtu: 1400, master: br.index, peerMac: '02:42:0a:00:00:02' });
        assert.equal(veth.master, br.index);
        assert.match(veth.mac ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, 'a link made without a MAC gets one');
        assert.equal(parseInt(veth.mac!.slice(0, 2), 16) & 3, 2, 'locally administered, unicast');
        await assert.rejects(nl.createVeth({ name: 'tsv9', peerName: 'eth9', peerNetnsFd: b.fd, master: 99999 }), (e) => errno(e) === 'EINVAL', 'no such master');
        assert.equal(await nl.getLinkByName('tsv9'), undefined, 'and nothing was made');
        assert.deepEqual((await nl.listLinks({ kind: 'bridge' })).map((l) => l.name), ['br0']);
        const eth = await inner.getLinkByName('eth0');
        assert.equal(eth?.mac, '02:42:0a:00:00:02');
        assert.equal(eth?.mtu, 1400);
        assert.equal((await nl.getLinkByIndex(veth.index))?.name, 'tsv0');
        assert.equal(await nl.getLinkByName('eth0'), undefined, 'the peer lives in the other namespace only');
        await nl.setBridgePort(veth.index, { hairpin: true, isolated: true });
        await nl.setLinkUp(veth.index);
        assert.equal((await nl.getLinkByName('tsv0'))?.up, true);
        assert.equal(await nl.deleteLink(veth.index), true);
        assert.equal(await inner.getLinkByName('eth0'), undefined, 'the peer went with it');
        assert.equal(await nl.deleteLink(veth.index), false, 'deleting twice says it was gone');
      } finally {
        nl.close();
        inner.close();
      }
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): addresses, routes and route lookups`, { skip: skipFor(kind) }, async () => {
    const s = subject(kind);
    try {
      const a = s.ns();
      const nl = s.k.netlink(a.fd);
      try {
        const br = await nl.createBridge({ name: 'br0' });
        await nl.setLinkUp(br.index);
        await nl.addAddress(br.index, 4, '10.9.0.1', 24);
        await assert.rejects(nl.addAddress(br.index, 4, '10.9.0.1', 24), (e) => errno(e) === 'EEXIST');
        assert.ok((await nl.listAddresses(4)).some((x) => x.index === br.index && x.address === '10.9.0.1' && x.prefixLen === 24));
        await nl.addRoute({ family: 4, gateway: '10.9.0.254', oif: br.index });
        await assert.rejects(nl.addRoute({ family: 4, gateway: '10.9.0.253', oif: br.index }), (e) => errno(e) === 'EEXIST', 'one default route per table');
        const def = (await nl.listRoutes(4)).filter((r) => r.dstLen === 0);
        assert.deepEqual(def.map((r) => [r.gateway, r.oif]), [['10.9.0.254', br.index]]);
        assert.equal((await nl.routeGet(4, '10.9.0.7'))?.oif, br.index, 'a connected address is reached through the bridge');
        assert.equal((await nl.routeGet(4, '192.0.2.1'))?.gateway, '10.9.0.254', 'anything else through the default route');
        assert.equal(await nl.deleteAddress(br.index, 4, '10.9.0.1', 24), true);
        assert.equal(await nl.deleteAddress(br.index, 4, '10.9.0.1', 24), false);
      } finally {
        nl.close();
      }
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): sysctls exist per namespace and per interface; a missing one is missing`, { skip: skipFor(kind) }, async () => {
    const s = subject(kind);
    try {
      const a = s.ns();
      const nl = s.k.netlink(a.fd);
      try {
        assert.equal(s.k.sysctl.get('net.ipv4.ip_forward', a.fd), '0', 'a fresh namespace does not forward');
        s.k.sysctl.set('net.ipv4.ip_forward', '1', a.fd);
        assert.equal(s.k.sysctl.get('net.ipv4.ip_forward', a.fd), '1');
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br0/route_localnet', a.fd), undefined, 'no interface, no key');
        const br = await nl.createBridge({ name: 'br0' });
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br0/route_localnet', a.fd), '0');
        s.k.sysctl.set('net/ipv4/conf/br0/route_localnet', '1', a.fd);
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br0/route_localnet', a.fd), '1');
        await nl.setLinkName(br.index, 'br1');
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br0/route_localnet', a.fd), undefined, 'the old name has no key');
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br1/route_localnet', a.fd), '1', 'the setting follows the interface');
        await nl.deleteLink(br.index);
        assert.equal(s.k.sysctl.get('net/ipv4/conf/br1/route_localnet', a.fd), undefined, 'gone with the interface');
        assert.equal(s.k.sysctl.get('net.ipv4.no_such_setting', a.fd), undefined);
        assert.throws(() => s.k.sysctl.set('net.ipv4.no_such_setting', '1', a.fd), (e) => errno(e) === 'ENOENT');
      } finally {
        nl.close();
      }
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): VLANs only on a filtering bridge (whatever this kernel can)`, { skip: skipFor(kind) }, async () => {
    const s = subject(kind);
    try {
      const a = s.ns();
      const b = s.ns();
      const nl = s.k.netlink(a.fd);
      try {
        const plain = await nl.createBridge({ name: 'br0' });
        const port = await nl.createVeth({ name: 'tsv0', peerName: 'eth0', peerNetnsFd: b.fd, master: plain.index });
        await assert.rejects(nl.bridgeVlan(port.index, 'add', 10, { pvid: true, untagged: true }), (e) => errno(e) === 'EOPNOTSUPP', 'a bridge that does not filter has no VLANs to set');
        const loose = await nl.createVeth({ name: 'tsv1', peerName: 'eth1', peerNetnsFd: b.fd });
        await assert.rejects(nl.setBridgePort(loose.index, { isolated: true }), (e) => errno(e) === 'EOPNOTSUPP', 'port flags need a bridge port');
        await assert.rejects(nl.setLinkUp(99999), (e) => errno(e) === 'ENODEV');
        const filtering = isRoot ? realVlanFiltering() : false;
        if (!filtering) await assert.rejects(nl.createBridge({ name: 'brv', vlanFiltering: true }), (e) => errno(e) === 'EOPNOTSUPP');
        else await nl.createBridge({ name: 'brv', vlanFiltering: true });
      } finally {
        nl.close();
      }
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): namespaces are pinned, identified by inode, removed once`, { skip: skipFor(kind) }, () => {
    const s = subject(kind);
    try {
      const a = s.ns();
      const b = s.ns();
      const ia = s.k.netns.inode(a.path);
      assert.equal(typeof ia, 'number');
      assert.notEqual(ia, s.k.netns.inode(b.path), 'two namespaces, two identities');
      assert.notEqual(ia, s.k.netns.inode('/proc/self/ns/net'), 'not ours');
      assert.equal(s.k.netns.inode(join(tmpdir(), 'tsnet-no-such-ns')), undefined);
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): files: read, write, create exclusive, list, kind, mkdir -p, remove`, () => {
    const s = subject(kind);
    const f = s.k.files;
    const p = (x: string) => join(s.dir, x);
    try {
      assert.equal(f.read(p('none')), undefined, 'nothing there reads as undefined');
      assert.equal(f.read(p('no/such/dir/x')), undefined);
      assert.throws(() => f.write(p('no/such/x'), 'a'), (e) => errno(e) === 'ENOENT', 'a missing parent');
      assert.throws(() => f.write(p('none'), 'a', { existing: true }), (e) => errno(e) === 'ENOENT', 'a control file is never created');
      f.write(p('a'), 'one');
      f.write(p('a'), 'two', { existing: true });
      assert.equal(f.read(p('a')), 'two');
      assert.throws(() => f.write(p('a/b'), 'x'), (e) => errno(e) === 'ENOTDIR', 'through a file');
      assert.throws(() => f.read(s.dir), (e) => errno(e) === 'EISDIR');
      assert.equal(f.create(p('c'), 'first'), true);
      assert.equal(f.create(p('c'), 'second'), false, 'taken');
      assert.equal(f.read(p('c')), 'first');
      f.mkdir(p('d/e/f'), 0o700);
      f.mkdir(p('d/e/f'));
      assert.equal(f.kind(p('d/e')), 'dir');
      assert.throws(() => f.mkdir(p('a/x')), (e) => errno(e) === 'ENOTDIR');
      assert.deepEqual(f.list(s.dir), ['a', 'c', 'd']);
      assert.deepEqual(f.list(p('none')), []);
      assert.throws(() => f.list(p('a')), (e) => errno(e) === 'ENOTDIR');
      assert.equal(f.kind(p('a')), 'file');
      assert.equal(f.kind(p('none')), undefined);
      assert.throws(() => f.remove(p('d')), (e) => errno(e) === 'ENOTEMPTY', 'a directory goes only when empty');
      assert.equal(f.remove(p('d/e/f')), true, 'an empty directory (a cgroup) goes');
      assert.equal(f.remove(p('a')), true);
      assert.equal(f.remove(p('a')), false, 'twice: nothing there');
      assert.equal(f.writable(s.dir), true);
      assert.equal(f.writable(p('none')), false);
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): files: symlinks are never written through by create, replace or noFollow reads; rename, link`, () => {
    const s = subject(kind);
    const f = s.k.files;
    const p = (x: string) => join(s.dir, x);
    try {
      f.write(p('target'), 'secret');
      f.symlink(p('target'), p('link'));
      assert.throws(() => f.symlink(p('target'), p('link')), (e) => errno(e) === 'EEXIST');
      assert.equal(f.kind(p('link')), 'symlink');
      assert.equal(f.read(p('link')), 'secret', 'a plain read follows');
      assert.equal(f.read(p('link'), { noFollow: true }), undefined, 'noFollow: a symlink holds nothing');
      f.symlink(p('dangling-target'), p('dangling'));
      assert.equal(f.create(p('dangling'), 'x'), false, 'O_EXCL refuses a symlink, even a dangling one');
      assert.equal(f.kind(p('dangling-target')), undefined, 'and creates nothing at its target');
      f.replace(p('link'), 'mine', { tmp: p('link.tmp') });
      assert.equal(f.kind(p('link')), 'file', 'replace puts a file where the symlink was');
      assert.equal(f.read(p('target')), 'secret', 'the target is untouched');
      assert.equal(f.kind(p('link.tmp')), undefined, 'no temp left');
      f.replace(p('r'), 'v1', { mode: 0o600 });
      f.replace(p('r'), 'v2');
      assert.equal(f.read(p('r')), 'v2');
      assert.deepEqual(f.list(s.dir).filter((x) => x.endsWith('.tmp')), [], 'no temps left');
      assert.throws(() => f.replace(p('none/r'), 'x'), (e) => errno(e) === 'ENOENT');
      f.link(p('r'), p('r2'));
      assert.throws(() => f.link(p('r'), p('r2')), (e) => errno(e) === 'EEXIST');
      assert.throws(() => f.link(p('none'), p('r3')), (e) => errno(e) === 'ENOENT');
      f.write(p('r2'), 'through the second name');
      assert.equal(f.read(p('r')), 'through the second name', 'one file, two names');
      f.rename(p('r2'), p('r3'));
      assert.equal(f.kind(p('r2')), undefined);
      assert.equal(f.read(p('r3')), 'through the second name');
      assert.throws(() => f.rename(p('none'), p('x')), (e) => errno(e) === 'ENOENT');
      f.mkdir(p('full/sub'));
      assert.throws(() => f.rename(p('r3'), p('full')), (e) => errno(e) === 'EISDIR');
      f.mkdir(p('tree/a'));
      f.write(p('tree/a/leaf'), 'x');
      f.rename(p('tree'), p('moved'));
      assert.equal(f.read(p('moved/a/leaf')), 'x', 'a directory takes its subtree');
      assert.equal(f.remove(p('link')), true);
      assert.equal(f.remove(p('dangling')), true, 'a symlink is removed, not its target');
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): which finds a program file on a PATH, never a directory or a path`, () => {
    const s = subject(kind);
    const f = s.k.files;
    try {
      f.mkdir(join(s.dir, 'bin/tool-dir'));
      f.write(join(s.dir, 'bin/tool'), '#!/bin/sh\n', { mode: 0o755 });
      const bin = join(s.dir, 'bin');
      assert.equal(s.k.exec.which('tool', [join(s.dir, 'none'), bin]), join(bin, 'tool'));
      assert.equal(s.k.exec.which('tool', `${join(s.dir, 'none')}::${bin}`), join(bin, 'tool'), 'a PATH string, empty entries skipped');
      assert.equal(s.k.exec.which('tool-dir', [bin]), undefined, 'a directory is not a program');
      assert.equal(s.k.exec.which('../bin/tool', [bin]), undefined, 'a name with a slash is never looked up');
      assert.equal(s.k.exec.which('absent', [bin]), undefined);
    } finally {
      s.done();
    }
  });

  test(`kernel contract (${kind}): bind mounts, read-only binds, unmount once`, { skip: kind === 'real' && !isRoot ? 'needs root (mounts)' : false }, () => {
    const s = subject(kind);
    const f = s.k.files;
    const m = s.k.mounts;
    const p = (x: string) => join(s.dir, x);
    try {
      f.write(p('src'), 'source');
      f.write(p('dst'), 'under');
      f.write(p('ro'), 'under');
      assert.equal(m.isMountPoint(p('dst')), false);
      assert.throws(() => m.bind(p('none'), p('dst')), (e) => errno(e) === 'ENOENT');
      assert.throws(() => m.bind(p('src'), p('none')), (e) => errno(e) === 'ENOENT', 'the target must exist');
      m.bind(p('src'), p('dst'));
      m.bind(p('src'), p('ro'), { readOnly: true });
      try {
        assert.equal(m.isMountPoint(p('dst')), true);
        assert.throws(() => f.write(p('ro'), 'x', { existing: true }), (e) => errno(e) === 'EROFS', 'a read-only bind refuses writes');
      } finally {
        assert.equal(m.unmount(p('dst')), true);
        assert.equal(m.unmount(p('ro'), { detach: true }), true);
      }
      assert.equal(m.unmount(p('dst')), false, 'twice: nothing mounted');
      assert.equal(m.isMountPoint(p('dst')), false);
      f.write(p('ro'), 'writable again', { existing: true });
    } finally {
      s.done();
    }
  });
}
