// tsnet-bridge driven as an orchestrator drives it: inside a throwaway "host"
// namespace (where the plugin builds its bridge), with fresh container namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { skipReason } from '../integration/harness.js';
import { world } from './world.js';
import { request, startServer } from '../integration/netprobe.js';

const skip = skipReason('ping');

test('tsnet-bridge: two containers on one bridge; CHECK; DEL twice, without netns; GC; nothing left', { skip }, () => {
  const w = world();
  try {
    const c1 = w.container();
    const c2 = w.container();
    const a1 = w.call('ADD', 'c1', c1, w.conf());
    const a2 = w.call('ADD', 'c2', c2, w.conf());
    assert.equal(a1.code, 0, a1.raw);
    assert.deepEqual(a1.out.ips, [{ address: '10.88.0.2/16', gateway: '10.88.0.1', interface: 2 }]);
    assert.equal(a1.out.interfaces[2].sandbox, `/run/netns/${c1}`);
    assert.equal(a2.out.ips[0].address, '10.88.0.3/16');
    assert.equal(spawnSync('ip', ['netns', 'exec', c1, 'ping', '-c1', '-W1', '10.88.0.3']).status, 0, 'c1 reaches c2');
    assert.match(spawnSync('ip', ['-n', c1, 'route'], { encoding: 'utf8' }).stdout, /default via 10\.88\.0\.1 dev eth0/);
    assert.match(w.inHost('iptables-save', '-t', 'nat').stdout, /-s 10\.88\.0\.2\/32 ! -d 10\.88\.0\.0\/16 .* -j MASQUERADE/);

    const withPrev = JSON.stringify({ ...JSON.parse(w.conf()), prevResult: a1.out });
    assert.equal(w.call('CHECK', 'c1', c1, withPrev).code, 0);
    spawnSync('ip', ['-n', c1, 'addr', 'flush', 'dev', 'eth0']);
    const chk = w.call('CHECK', 'c1', c1, withPrev);
    assert.equal(chk.out?.code, 102, `CHECK notices the removed address: ${chk.raw}`);

    assert.equal(w.call('DEL', 'c1', c1, w.conf()).code, 0);
    assert.equal(w.call('DEL', 'c1', c1, w.conf()).code, 0, 'DEL twice');
    assert.equal(w.call('DEL', 'c1', undefined, w.conf()).code, 0, 'DEL without CNI_NETNS');
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /10\.88\.0\.2\/32/);
    assert.deepEqual(w.ipamFiles(), ['10.88.0.3']);

    // GC with c2 no longer valid: its veth, rule and address go.
    const gc = JSON.stringify({ ...JSON.parse(w.conf()), 'cni.dev/valid-attachments': [] });
    assert.equal(w.call('GC', '', undefined, gc).code, 0);
    assert.deepEqual(w.ipamFiles(), []);
    assert.doesNotMatch(w.inHost('ip', '-o', 'link').stdout, /tsc[0-9a-f]{12}/);
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /tsnet-cni:net1:/);
  } finally {
    w.done();
  }
});

test('tsnet-bridge: a failed ADD rolls back; bad configurations get the spec\'s codes', { skip }, () => {
  const w = world();
  try {
    const c = w.container();
    // The container already has an eth0: the veth cannot be created under that name.
    spawnSync('ip', ['-n', c, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0']);
    const r = w.call('ADD', 'c1', c, w.conf());
    assert.equal(r.code, 1, r.raw);
    assert.deepEqual(w.ipamFiles(), [], 'the address went back');
    assert.doesNotMatch(w.inHost('ip', '-o', 'link').stdout, /tsc[0-9a-f]{12}/, 'no veth left');
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /tsnet-cni:net1:/, 'no rule left');
    for (const [extra, code] of [[{ frob: 1 }, 2], [{ vlan: 5000 }, 7], [{ vlan: 10, vlanTrunk: [{ id: 11 }] }, 7], [{ vlanTrunk: [{ minID: 9, maxID: 3 }] }, 7], [{ hairpinMode: true, promiscMode: true }, 7], [{ mtu: 10 }, 7], [{ bridge: 'a-name-that-is-too-long' }, 7], [{ ipam: undefined }, 7]] as const) {
      const x = w.call('ADD', 'c9', c, w.conf(extra as Record<string, unknown>));
      assert.equal(x.out?.code, code, `${JSON.stringify(extra)}: ${x.raw}`);
    }
    assert.equal(w.call('ADD', 'c9', 'tsnet-no-such-ns', w.conf()).out?.code, 3);
    // STATUS: ready, or 50 with the reason.
    assert.equal(w.call('STATUS', '', undefined, w.conf()).code, 0);
    const noDir = w.call('STATUS', '', undefined, w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/16' }]], dataDir: '/proc/tsnet-cannot-exist' } }));
    assert.equal(noDir.out?.code, 50, noDir.raw);
    const pmStatus = (backend: string, path: string) =>
      w.call('STATUS', '', undefined, JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', backend }), 'tsnet-portmap', { PATH: path });
    assert.equal(pmStatus('nftables', process.env.PATH ?? '').code, 0);
    assert.equal(pmStatus('nftables', '/usr/bin').out?.code, 50, 'no nft on PATH (nft lives in /usr/sbin)');
  } finally {
    w.done();
  }
});

/** Whether this kernel has bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), tried in a throwaway namespace. */
function kernelHasBridgeVlans(): boolean {
  const n = `tsnet-t-vlan-${randomBytes(3).toString('hex')}`;
  spawnSync('ip', ['netns', 'add', n]);
  try {
    return spawnSync('ip', ['-n', n, 'link', 'add', 'brv', 'type', 'bridge', 'vlan_filtering', '1']).status === 0;
  } finally {
    spawnSync('ip', ['netns', 'del', n]);
  }
}

test('tsnet-bridge VLANs: access ports of one VLAN reach each other and their gateway, another VLAN is cut off; trunk (or, without kernel support, a clear refusal that leaves nothing)', { skip }, () => {
  const w = world();
  try {
    const [c1, c2, c3, c4] = [w.container(), w.container(), w.container(), w.container()];
    const v = (vlan: number, subnet: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ ...JSON.parse(w.conf({ bridge: 'cniv0', vlan, preserveDefaultVlan: false, ...extra })), name: `vlan${vlan}`, ipam: { type: 'tsnet-ipam', ranges: [[{ subnet }]], dataDir: JSON.parse(w.conf()).ipam.dataDir } });
    if (!kernelHasBridgeVlans()) {
      const r = w.call('ADD', 'c1', c1, v(10, '10.60.0.0/24'));
      assert.equal(r.out?.code, 2, r.raw);
      assert.match(r.out.msg, /VLAN filtering.*kernel/);
      assert.doesNotMatch(w.inHost('ip', '-o', 'link').stdout, /cniv0|tsc[0-9a-f]{12}/, 'nothing left');
      assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /tsnet-cni:vlan10:/);
      const leased = join(JSON.parse(w.conf()).ipam.dataDir, 'vlan10');
      assert.deepEqual(existsSync(leased) ? readdirSync(leased).filter((f) => /^\d/.test(f)) : [], [], 'the address went back');
      return;
    }
    for (const [cid, ns, conf] of [['c1', c1, v(10, '10.60.0.0/24')], ['c2', c2, v(10, '10.60.0.0/24')], ['c3', c3, v(20, '10.60.0.0/24', { isGateway: false, isDefaultGateway: false, ipMasq: false })]] as const) {
      const r = w.call('ADD', cid, ns, conf);
      assert.equal(r.code, 0, r.raw);
    }
    // c3 took an address from its own network's pool; put it where it would clash if VLANs leaked.
    spawnSync('ip', ['-n', c3, 'addr', 'flush', 'dev', 'eth0']);
    spawnSync('ip', ['-n', c3, 'addr', 'add', '10.60.0.50/24', 'dev', 'eth0']);
    const ping = (ns: string, ip: string) => spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W1', ip]).status === 0;
    assert.ok(ping(c1, '10.60.0.3'), 'same VLAN: c1 reaches c2');
    assert.ok(ping(c1, '10.60.0.1'), 'the gateway on cniv0.10 answers');
    assert.ok(!ping(c3, '10.60.0.2'), 'VLAN 20 does not reach VLAN 10');
    assert.match(w.inHost('ip', '-o', 'addr', 'show', 'cniv0.10').stdout, /10\.60\.0\.1\/24/);
    type Vl = Array<{ ifname: string; vlans: Array<{ vlan: number; flags?: string[] }> }>;
    const port = (JSON.parse(w.inHost('bridge', '-j', 'vlan', 'show').stdout) as Vl).find((p) => p.ifname.startsWith('tsc') && p.vlans.some((x) => x.vlan === 20));
    assert.deepEqual(port?.vlans.map((x) => [x.vlan, x.flags ?? []]), [[20, ['PVID', 'Egress Untagged']]], 'access port, default VLAN removed');
    const t = w.call('ADD', 'c4', c4, JSON.stringify({ ...JSON.parse(w.conf({ bridge: 'cnit0', vlanTrunk: [{ id: 30 }, { minID: 40, maxID: 41 }], isGateway: false, isDefaultGateway: false, ipMasq: false })), name: 'trunk', ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.61.0.0/24' }]], dataDir: JSON.parse(w.conf()).ipam.dataDir } }));
    assert.equal(t.code, 0, t.raw);
    const trunk = (JSON.parse(w.inHost('bridge', '-j', 'vlan', 'show').stdout) as Vl).find((p) => p.vlans.some((x) => x.vlan === 30));
    assert.deepEqual(trunk?.vlans.map((x) => x.vlan), [1, 30, 40, 41]);
  } finally {
    w.done();
  }
});

test('tsnet-bridge: the container MAC from runtimeConfig, args or CNI_ARGS (in the reference order); portIsolation; DAD off unless enabledad', { skip }, () => {
  const w = world();
  try {
    const [c1, c2, c3, c4, c5] = [w.container(), w.container(), w.container(), w.container(), w.container()];
    const mac = (ns: string) => /link\/ether ([0-9a-f:]+)/.exec(spawnSync('ip', ['-n', ns, 'link', 'show', 'eth0'], { encoding: 'utf8' }).stdout)?.[1];
    const both = w.call('ADD', 'c1', c1, w.conf({ runtimeConfig: { mac: '02:00:00:AA:BB:01' }, args: { cni: { mac: '02:00:00:aa:bb:99' } } }));
    assert.equal(both.code, 0, both.raw);
    assert.equal(mac(c1), '02:00:00:aa:bb:01', 'runtimeConfig.mac wins over args.cni.mac');
    assert.equal(both.out.interfaces[2].mac, '02:00:00:aa:bb:01', 'and the result reports it');
    const env = w.call('ADD', 'c2', c2, w.conf(), 'tsnet-bridge', { CNI_ARGS: 'IgnoreUnknown=1;MAC=02:00:00:aa:bb:02' });
    assert.equal(env.code, 0, env.raw);
    assert.equal(mac(c2), '02:00:00:aa:bb:02', 'CNI_ARGS MAC');
    for (const bad of ['zz', '03:00:00:00:00:01', '00:00:00:00:00:00']) {
      const r = w.call('ADD', 'c9', c3, w.conf({ runtimeConfig: { mac: bad } }));
      assert.equal(r.out?.code, 7, `${bad}: ${r.raw}`);
    }
    assert.deepEqual(w.ipamFiles().length, 2, 'refused ADDs took no address');
    const dad = (ns: string) => spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', 'net.ipv6.conf.eth0.accept_dad'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(dad(c1), '0', 'DAD off by default, as the reference');
    // Two isolated ports on their own bridge cannot reach each other; an ordinary port reaches both, and so does the gateway.
    const iso = (extra: Record<string, unknown>) =>
      JSON.stringify({ ...JSON.parse(w.conf({ bridge: 'cnii0', ...extra })), name: 'iso', ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.62.0.0/24' }]], dataDir: JSON.parse(w.conf()).ipam.dataDir } });
    for (const [cid, ns, conf] of [['c3', c3, iso({ portIsolation: true, enabledad: true })], ['c4', c4, iso({ portIsolation: true })], ['c5', c5, iso({})]] as const) {
      const r = w.call('ADD', cid, ns, conf);
      assert.equal(r.code, 0, r.raw);
    }
    assert.equal(dad(c3), '1', 'enabledad turns it on');
    const ping = (ns: string, ip: string) => spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W1', ip]).status === 0;
    assert.ok(!ping(c3, '10.62.0.3'), 'isolated to isolated: cut off');
    assert.ok(ping(c5, '10.62.0.2') && ping(c5, '10.62.0.3'), 'a plain port reaches isolated ones');
    assert.ok(ping(c3, '10.62.0.1'), 'the gateway on the bridge answers an isolated port');
    type Br = Array<{ ifname: string; isolated?: boolean }>;
    const ports = JSON.parse(w.inHost('bridge', '-j', '-d', 'link', 'show').stdout) as Br;
    assert.equal(ports.filter((p) => p.isolated === true).length, 2, 'exactly the two ports asked for are isolated');
  } finally {
    w.done();
  }
});

test('tsnet-bridge promiscMode sets the bridge promiscuous', { skip }, () => {
  const w = world();
  try {
    const r = w.call('ADD', 'c1', w.container(), w.conf({ bridge: 'cnip0', promiscMode: true }));
    assert.equal(r.code, 0, r.raw);
    assert.match(w.inHost('ip', 'link', 'show', 'cnip0').stdout, /PROMISC/);
  } finally {
    w.done();
  }
});

test('a bridge + portmap chain, as a conflist runs it: published port from the host and through 127.0.0.1; DEL and GC clean up', { skip }, async () => {
  const w = world();
  try {
    const c1 = w.container();
    const c2 = w.container();
    const bridgeRes = w.call('ADD', 'c1', c1, w.conf());
    assert.equal(bridgeRes.code, 0, bridgeRes.raw);
    // The runtime passes the previous plugin's result and its runtime config to the next one.
    const pm = (prevResult: unknown, maps: unknown[] = [{ hostPort: 8081, containerPort: 80, protocol: 'tcp' }, { hostPort: 5354, containerPort: 53, protocol: 'udp' }]) =>
      JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', snat: true, runtimeConfig: { portMappings: maps }, prevResult });
    const pmRes = w.call('ADD', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap');
    assert.equal(pmRes.code, 0, pmRes.raw);
    assert.deepEqual(pmRes.out.ips, bridgeRes.out.ips, 'portmap passes the result through');
    assert.equal(w.call('CHECK', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap').code, 0);
    const servers = [await startServer(`/run/netns/${c1}`, 'tcp', [80]), await startServer(`/run/netns/${c1}`, 'udp', [53])];
    try {
      assert.equal(request(`/run/netns/${w.host}`, 'tcp', '127.0.0.1', 8081), '10.88.0.1 80', 'through 127.0.0.1');
      assert.equal(request(`/run/netns/${w.host}`, 'udp', '10.88.0.1', 5354), '10.88.0.1 53', 'UDP through a host address');
      w.call('ADD', 'c2', c2, w.conf());
      assert.equal(request(`/run/netns/${c2}`, 'tcp', '10.88.0.1', 8081), '10.88.0.3 80', 'another container through the gateway address keeps its source');
    } finally {
      for (const x of servers) x.kill();
    }
    // DEL in conflist order (reverse): portmap, then bridge.
    assert.equal(w.call('DEL', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap').code, 0);
    assert.equal(w.call('DEL', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap').code, 0, 'DEL twice');
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /--dport 8081/);
    const chk = w.call('CHECK', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap');
    assert.equal(chk.out?.code, 102, 'CHECK notices the missing rule');
    // GC forgets mappings of attachments that are gone.
    w.call('ADD', 'c1', c1, pm(bridgeRes.out), 'tsnet-portmap');
    const gc = JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', 'cni.dev/valid-attachments': [] });
    assert.equal(w.call('GC', '', undefined, gc, 'tsnet-portmap').code, 0);
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /tsnet-pm:net1:/);
    const bad = w.call('ADD', 'c1', c1, pm(bridgeRes.out, [{ hostPort: 0, containerPort: 80 }]), 'tsnet-portmap');
    assert.equal(bad.out?.code, 7);
    assert.equal(w.call('ADD', 'c1', c1, JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 1 }] } }), 'tsnet-portmap').out?.code, 7, 'no prevResult');
  } finally {
    w.done();
  }
});

test('tsnet-portmap with backend nftables: published ports through the host and 127.0.0.1, CHECK, DEL and GC in the inet tsnet_cni table', { skip: skip || skipReason('nft') }, async () => {
  const w = world();
  try {
    const [c1, c2] = [w.container(), w.container()];
    const br = w.call('ADD', 'c1', c1, w.conf());
    assert.equal(br.code, 0, br.raw);
    const pm = (prevResult: unknown, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', backend: 'nftables', runtimeConfig: { portMappings: [{ hostPort: 8082, containerPort: 80, protocol: 'tcp' }, { hostPort: 5355, containerPort: 53, protocol: 'udp' }] }, prevResult, ...extra });
    const add = w.call('ADD', 'c1', c1, pm(br.out), 'tsnet-portmap');
    assert.equal(add.code, 0, add.raw);
    const table = () => w.inHost('nft', 'list', 'table', 'inet', 'tsnet_cni').stdout;
    assert.match(table(), /fib daddr type local tcp dport 8082 dnat ip to 10\.88\.0\.2:80/);
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /8082/, 'nothing in iptables');
    assert.equal(w.call('CHECK', 'c1', c1, pm(br.out), 'tsnet-portmap').code, 0);
    const servers = [await startServer(`/run/netns/${c1}`, 'tcp', [80]), await startServer(`/run/netns/${c1}`, 'udp', [53])];
    try {
      assert.equal(request(`/run/netns/${w.host}`, 'tcp', '127.0.0.1', 8082), '10.88.0.1 80', 'through 127.0.0.1');
      assert.equal(request(`/run/netns/${w.host}`, 'udp', '10.88.0.1', 5355), '10.88.0.1 53', 'UDP through a host address');
      w.call('ADD', 'c2', c2, w.conf());
      assert.equal(request(`/run/netns/${c2}`, 'tcp', '10.88.0.1', 8082), '10.88.0.3 80', 'another container keeps its source');
    } finally {
      for (const x of servers) x.kill();
    }
    assert.equal(w.call('DEL', 'c1', c1, pm(br.out), 'tsnet-portmap').code, 0);
    assert.equal(w.call('DEL', 'c1', c1, pm(br.out), 'tsnet-portmap').code, 0, 'DEL twice');
    assert.doesNotMatch(table(), /tsnet-pm:/, 'DEL removed every rule of the attachment');
    assert.equal(w.call('CHECK', 'c1', c1, pm(br.out), 'tsnet-portmap').out?.code, 102, 'CHECK notices the missing rules');
    w.call('ADD', 'c1', c1, pm(br.out), 'tsnet-portmap');
    const gc = JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', backend: 'nftables', 'cni.dev/valid-attachments': [] });
    assert.equal(w.call('GC', '', undefined, gc, 'tsnet-portmap').code, 0);
    assert.doesNotMatch(table(), /tsnet-pm:net1:/, 'GC removed the rules of attachments that are gone');
    assert.equal(w.call('ADD', 'c1', c1, pm(br.out, { backend: 'pf' }), 'tsnet-portmap').out?.code, 7, 'an unknown backend');
    assert.equal(w.call('ADD', 'c1', c1, pm(br.out, { conditionsV4: ['-s', '192.0.2.0/24'] }), 'tsnet-portmap').out?.code, 2, 'conditions are refused, not ignored');
  } finally {
    w.done();
  }
});
