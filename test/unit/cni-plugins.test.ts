// The CNI plugins' logic over the in-memory kernel (no root): what tsnet-bridge
// and tsnet-loopback ask of the kernel, their rollback and their refusals. The
// binaries on the real kernel are tested in test/cni/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FakeKernel } from '../../src/system/fake/index.js';
import { runCni, type CniPlugin } from '../../src/cni/skel.js';
import { bridgePlugin, hostVethName } from '../../src/cni/bridge.js';
import { loopbackPlugin } from '../../src/cni/loopback.js';
import { silentLogger } from '../../src/log.js';

const NS = '/fake/netns/c1';

function world(opts: { vlans?: boolean } = {}) {
  const k = new FakeKernel({ bridgeVlanFiltering: opts.vlans });
  const dir = '/tmp/tsnet-cniu'; // in the fake's filesystem
  k.netns.create(NS);
  const ns = k.pins.get(NS)!;
  const h = { sys: k, runDir: join(dir, 'run'), log: silentLogger() };
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      cniVersion: '1.1.0', name: 'net1', type: 'tsnet-bridge', bridge: 'cni0', isGateway: true, isDefaultGateway: true, ipMasq: true,
      ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/16' }]], dataDir: join(dir, 'ipam') }, ...extra,
    });
  const call = async (plugin: CniPlugin, command: string, stdin: string, env: Record<string, string> = {}) => {
    const r = await runCni(plugin, { env: { CNI_COMMAND: command, CNI_CONTAINERID: 'c1', CNI_NETNS: NS, CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent', ...env }, stdin });
    return { code: r.code, out: r.stdout ? JSON.parse(r.stdout) : undefined };
  };
  const leases = () => k.files.list(join(dir, 'ipam', 'net1')).filter((f) => /^\d/.test(f));
  const link = (name: string, where = k.host) => [...where.links.values()].find((l) => l.name === name);
  const done = () => undefined; // nothing outside the fake
  return { k, ns, h, conf, call, leases, link, done };
}

test('tsnet-bridge ADD over the fake kernel: bridge with its gateway, veth born in the namespace, addresses, default route, forwarding, one masquerade rule', async () => {
  const w = world();
  try {
    const p = bridgePlugin(w.h);
    const r = await w.call(p, 'ADD', w.conf({ hairpinMode: true, runtimeConfig: { mac: '02:00:00:00:00:c1' } }));
    assert.equal(r.code, 0, JSON.stringify(r.out));
    const br = w.link('cni0')!;
    assert.equal(br.kind, 'bridge');
    assert.equal(br.up, true);
    assert.deepEqual(w.k.host.addrs.filter((a) => a.index === br.index).map((a) => `${a.address}/${a.prefixLen}`), ['10.88.0.1/16']);
    const veth = w.link(r.out.interfaces[1].name)!;
    assert.equal(veth.master, br.index);
    assert.deepEqual(veth.brport, { hairpin: true, isolated: undefined });
    assert.match(veth.alias!, /^tsnet-cni:net1:[0-9a-f]{16}$/);
    const eth = w.link('eth0', w.ns)!;
    assert.equal(eth.mac, '02:00:00:00:00:c1');
    assert.deepEqual(r.out.interfaces[2], { name: 'eth0', mac: '02:00:00:00:00:c1', sandbox: NS });
    assert.deepEqual(w.ns.addrs.map((a) => `${a.address}/${a.prefixLen}`), ['10.88.0.2/16']);
    assert.deepEqual(w.ns.routes.map((x) => [x.dstLen, x.gateway]), [[0, '10.88.0.1']]);
    assert.equal(w.k.sysctl.get('net.ipv4.ip_forward'), '1');
    assert.equal(w.k.sysctl.get('net/ipv6/conf/eth0/accept_dad', w.k.netns.open(NS)), '0', 'DAD off unless enabledad');
    const restores = w.k.commands.filter((c) => c.argv[0] === 'iptables-restore');
    assert.equal(restores.length, 1);
    assert.match(restores[0]!.input!, /-A TSNET-CNI-MASQ -s 10\.88\.0\.2\/32 ! -d 10\.88\.0\.0\/16 -m comment --comment "tsnet-cni:net1:[0-9a-f]{16}" -j MASQUERADE/);
    assert.deepEqual(w.leases(), ['10.88.0.2']);
    // DEL needs no namespace, and twice is fine.
    for (let i = 0; i < 2; i++) assert.equal((await w.call(p, 'DEL', w.conf(), { CNI_NETNS: '' })).code, 0);
    assert.equal(w.link(hostVethName({ containerId: 'c1', ifname: 'eth0' } as never)), undefined);
    assert.equal(w.link('eth0', w.ns), undefined, 'the container end went with it');
    assert.deepEqual(w.leases(), []);
  } finally {
    w.done();
  }
});

test('tsnet-bridge: a kernel failure midway rolls back the veth and the address; the failure is reported', async () => {
  const w = world();
  try {
    const p = bridgePlugin(w.h);
    w.k.failOn = /add address 10\.88\.0\.2/; // inside the container, after the veth exists
    const r = await w.call(p, 'ADD', w.conf());
    assert.equal(r.code, 1);
    assert.equal(r.out.code, 100, 'a syscall failure');
    assert.match(r.out.msg, /injected/);
    assert.deepEqual([...w.ns.links.values()].map((l) => l.name), ['lo']);
    assert.equal([...w.k.host.links.values()].some((l) => l.kind === 'veth'), false);
    assert.deepEqual(w.leases(), [], 'the address went back');
    // The retry works.
    assert.equal((await w.call(p, 'ADD', w.conf())).code, 0);
  } finally {
    w.done();
  }
});

test('tsnet-bridge refusals: VLANs on a kernel without filtering (2, nothing left), bad MACs (7), a link in the way (7), a missing namespace (3)', async () => {
  const w = world();
  try {
    const p = bridgePlugin(w.h);
    const vlan = await w.call(p, 'ADD', w.conf({ bridge: 'cniv0', vlan: 10 }));
    assert.equal(vlan.out.code, 2, JSON.stringify(vlan.out));
    assert.match(vlan.out.msg, /VLAN filtering/);
    assert.equal(w.link('cniv0'), undefined);
    for (const mac of ['nope', '01:00:5e:00:00:01']) assert.equal((await w.call(p, 'ADD', w.conf({ runtimeConfig: { mac } }))).out.code, 7, mac);
    assert.equal((await w.call(p, 'ADD', w.conf(), { CNI_ARGS: 'MAC=zz' })).out.code, 7);
    w.k.host.add({ name: 'cnix0', kind: 'veth', mtu: 1500, up: true });
    const clash = await w.call(p, 'ADD', w.conf({ bridge: 'cnix0' }));
    assert.equal(clash.out.code, 7);
    assert.match(clash.out.msg, /cnix0 exists and is not a bridge/);
    assert.equal((await w.call(p, 'ADD', w.conf(), { CNI_NETNS: '/fake/netns/none' })).out.code, 3);
    assert.deepEqual(w.leases(), [], 'no refusal kept an address');
    assert.equal(w.k.commands.filter((c) => c.argv[0] === 'iptables-restore' && /-A /.test(c.input ?? '')).length, 0, 'no rule was added');
  } finally {
    w.done();
  }
});

test('tsnet-bridge VLANs where the kernel filters: access port without VLAN 1, gateway on <bridge>.<vlan> as an access port of the same VLAN', async () => {
  const w = world({ vlans: true });
  try {
    const p = bridgePlugin(w.h);
    const r = await w.call(p, 'ADD', w.conf({ bridge: 'cniv0', vlan: 10, preserveDefaultVlan: false }));
    assert.equal(r.code, 0, JSON.stringify(r.out));
    const port = w.link(r.out.interfaces[1].name)!;
    assert.deepEqual([...port.vlans!], [[10, { pvid: true, untagged: true }]]);
    const gw = w.link('cniv0.10')!;
    assert.deepEqual(w.k.host.addrs.filter((a) => a.index === gw.index).map((a) => a.address), ['10.88.0.1']);
    const gwPort = [...w.k.host.links.values()].find((l) => l.name.startsWith('tsg'))!;
    assert.deepEqual([...gwPort.vlans!], [[10, { pvid: true, untagged: true }]]);
  } finally {
    w.done();
  }
});

test('tsnet-loopback over the fake kernel: ADD brings lo up, CHECK sees it, DEL takes it down, a missing namespace is 3 for ADD and fine for DEL', async () => {
  const w = world();
  try {
    const p = loopbackPlugin(w.k);
    const conf = JSON.stringify({ cniVersion: '1.1.0', name: 'lo', type: 'tsnet-loopback' });
    assert.equal((await w.call(p, 'ADD', conf)).code, 0);
    assert.equal(w.ns.links.get(1)!.up, true);
    assert.equal((await w.call(p, 'CHECK', JSON.stringify({ ...JSON.parse(conf), prevResult: { cniVersion: '1.1.0' } }))).code, 0);
    assert.equal((await w.call(p, 'DEL', conf)).code, 0);
    assert.equal(w.ns.links.get(1)!.up, false);
    const down = await w.call(p, 'CHECK', JSON.stringify({ ...JSON.parse(conf), prevResult: { cniVersion: '1.1.0' } }));
    assert.equal(down.out.code, 102, 'CHECK fails while lo is down');
    assert.equal((await w.call(p, 'ADD', conf, { CNI_NETNS: '/fake/netns/none' })).out.code, 3);
    assert.equal((await w.call(p, 'DEL', conf, { CNI_NETNS: '/fake/netns/none' })).code, 0);
  } finally {
    w.done();
  }
});
