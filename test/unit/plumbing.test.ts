// The shared kernel plumbing (src/plumbing) over the in-memory kernel: what the
// bridge driver, the tsnet-bridge plugin and the runtime rely on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKernel } from '../../src/system/fake/index.js';
import { ensureAddresses, ensureBridgeDevice, ifAddress, setPortVlans } from '../../src/plumbing/bridge.js';
import { ensureDefaultRoute, plugVeth, unplugVeth } from '../../src/plumbing/veth.js';
import { parseMac } from '../../src/plumbing/names.js';
import { ConflictError, SyscallError, TsnetError } from '../../src/errors.js';

function setup(opts: { vlans?: boolean } = {}) {
  const k = new FakeKernel({ bridgeVlanFiltering: opts.vlans });
  k.netns.create('/fake/ns/c1');
  const fd = k.netns.open('/fake/ns/c1');
  const ns = k.pins.get('/fake/ns/c1')!;
  return { k, fd, ns, nl: k.netlink() };
}

test('ensureBridgeDevice: creates once, adopts an existing bridge, refuses a link that is not one, honours create:false', async () => {
  const { k, nl } = setup();
  const br = (await ensureBridgeDevice(nl, { name: 'br0', mtu: 1400, alias: 'a' }, { create: true }))!;
  assert.equal(br.up, true);
  const again = (await ensureBridgeDevice(nl, { name: 'br0', mtu: 1500 }, { create: true, enforceMtu: true, promisc: true }))!;
  assert.equal(again.index, br.index, 'the same bridge');
  const link = k.host.links.get(br.index)!;
  assert.equal(link.mtu, 1500, 'enforceMtu brings the MTU to the spec');
  assert.equal(link.promisc, true);
  k.host.add({ name: 'notbr', kind: 'veth', mtu: 1500, up: true });
  await assert.rejects(ensureBridgeDevice(nl, { name: 'notbr' }, { create: true }), (e) => e instanceof ConflictError && /not a bridge \(veth\)/.test(e.message));
  assert.equal(await ensureBridgeDevice(nl, { name: 'gone0' }, { create: false }), undefined);
  assert.equal(await nl.getLinkByName('gone0'), undefined);
});

test('ensureAddresses adds only what is missing; ifAddress keeps the host bits', async () => {
  const { k, nl } = setup();
  const br = (await ensureBridgeDevice(nl, { name: 'br0' }, { create: true }))!;
  assert.deepEqual(ifAddress('10.1.2.3/24'), { family: 4, address: '10.1.2.3', prefixLen: 24 });
  await ensureAddresses(nl, br.index, [ifAddress('10.1.0.1/16'), ifAddress('fd00::1/64')]);
  await ensureAddresses(nl, br.index, [ifAddress('10.1.0.1/16'), ifAddress('fd00::1/64')]);
  assert.deepEqual(k.host.addrs.map((a) => `${a.address}/${a.prefixLen}`), ['10.1.0.1/16', 'fd00::1/64']);
});

test('plugVeth: the namespace end is born with its name, MAC and addresses; port flags, DAD, lo, routes and a default route only where none is', async () => {
  const { k, fd, ns, nl } = setup();
  const br = (await ensureBridgeDevice(nl, { name: 'br0' }, { create: true }))!;
  const base = { master: br.index, nsFd: fd, where: 'sandbox web', addresses: [ifAddress('10.1.0.2/16')] };
  const { host, peer } = await plugVeth(k, {
    ...base, hostName: 'tsv1', peerName: 'eth0', peerMac: '02:42:0a:01:00:02', alias: 'tag', hairpin: true, isolated: true, dad: false, loopbackUp: true,
    routes: [{ family: 4, dst: '192.168.0.0', dstLen: 24, gateway: '10.1.0.254' }],
    defaultGateways: [{ family: 4, gateway: '10.1.0.1' }],
  });
  assert.equal(peer.mac, '02:42:0a:01:00:02');
  assert.equal(peer.up, true);
  const hostLink = k.host.links.get(host.index)!;
  assert.deepEqual(hostLink.brport, { hairpin: true, isolated: true });
  assert.equal(hostLink.master, br.index);
  assert.equal(hostLink.up, true);
  assert.equal(hostLink.alias, 'tag');
  assert.equal(k.sysctl.get('net/ipv6/conf/eth0/accept_dad', fd), '0');
  assert.equal(ns.links.get(1)!.up, true, 'lo up');
  assert.deepEqual(ns.addrs.map((a) => `${a.address}/${a.prefixLen}`), ['10.1.0.2/16']);
  assert.deepEqual(ns.routes.map((r) => [r.dst, r.dstLen, r.gateway]), [['192.168.0.0', 24, '10.1.0.254'], [undefined, 0, '10.1.0.1']]);
  // A second interface: the family has a default route already, so it keeps it.
  await plugVeth(k, { ...base, hostName: 'tsv2', peerName: 'eth1', addresses: [ifAddress('10.2.0.2/16')], defaultGateways: [{ family: 4, gateway: '10.2.0.1' }] });
  assert.deepEqual(ns.routes.filter((r) => r.dstLen === 0).map((r) => r.gateway), ['10.1.0.1']);
  assert.equal(k.host.links.get((await nl.getLinkByName('tsv2'))!.index)!.brport, undefined, 'no flags asked, none set');
  assert.equal(k.sysctl.get('net/ipv6/conf/eth1/accept_dad', fd), '1', 'dad undefined leaves the kernel default');
});

test('plugVeth: a stale host end is replaced; a name taken inside the namespace is a ConflictError naming the place; unplug takes both ends', async () => {
  const { k, fd, ns, nl } = setup();
  const br = (await ensureBridgeDevice(nl, { name: 'br0' }, { create: true }))!;
  const spec = { hostName: 'tsv1', peerName: 'eth0', master: br.index, nsFd: fd, where: 'sandbox web', addresses: [] };
  k.host.add({ name: 'tsv1', kind: 'veth', mtu: 1500, up: false });
  await plugVeth(k, spec);
  assert.equal([...k.host.links.values()].filter((l) => l.name === 'tsv1').length, 1);
  await assert.rejects(plugVeth(k, { ...spec, hostName: 'tsv2' }), (e) => e instanceof ConflictError && e.message === 'sandbox web already has an interface named eth0');
  assert.equal(await nl.getLinkByName('tsv2'), undefined, 'nothing half-made');
  await unplugVeth(k, 'tsv1');
  assert.equal(await nl.getLinkByName('tsv1'), undefined);
  assert.equal([...ns.links.values()].some((l) => l.name === 'eth0'), false, 'the peer went with it');
  // The host end gone, the namespace end left behind: removed when it is ours (veth, our MAC), kept otherwise.
  const orphan = ns.add({ name: 'eth5', kind: 'veth', mtu: 1500, mac: '02:00:00:00:00:05', up: true });
  await unplugVeth(k, 'tsv-none', { nsFd: fd, name: 'eth5', mac: '02:00:00:00:00:09' });
  assert.ok(ns.links.has(orphan.index), 'another MAC: not ours');
  await unplugVeth(k, undefined, { nsFd: fd, name: 'eth5', mac: '02:00:00:00:00:05' });
  assert.ok(!ns.links.has(orphan.index));
});

test('a kernel failure inside the namespace surfaces as the SyscallError; the caller unplugs and nothing remains', async () => {
  const { k, fd, ns, nl } = setup();
  const br = (await ensureBridgeDevice(nl, { name: 'br0' }, { create: true }))!;
  k.failOn = /add address 10\.1\.0\.2/;
  await assert.rejects(plugVeth(k, { hostName: 'tsv1', peerName: 'eth0', master: br.index, nsFd: fd, where: 'x', addresses: [ifAddress('10.1.0.2/16')] }), (e) => e instanceof SyscallError && e.errno === 'EIO');
  await unplugVeth(k, 'tsv1');
  assert.deepEqual([...ns.links.values()].map((l) => l.name), ['lo']);
  assert.equal(await nl.getLinkByName('tsv1'), undefined);
});

test('ensureDefaultRoute: the first candidate whose interface exists, none when the family has one', async () => {
  const { k, fd, ns } = setup();
  const inner = k.netlink(fd);
  ns.add({ name: 'eth1', kind: 'veth', mtu: 1500, up: true });
  assert.equal(await ensureDefaultRoute(inner, 4, [{ gateway: '10.0.0.1', ifname: 'eth0' }, { gateway: '10.1.0.1', ifname: 'eth1' }]), '10.1.0.1', 'eth0 is missing: the next one');
  assert.equal(await ensureDefaultRoute(inner, 4, [{ gateway: '10.2.0.1', ifname: 'eth1' }]), undefined, 'one exists already');
  assert.equal(await ensureDefaultRoute(inner, 6, []), undefined);
  assert.deepEqual(ns.routes.map((r) => r.gateway), ['10.1.0.1']);
});

test('setPortVlans: access port with the default VLAN dropped, trunk; EOPNOTSUPP where the bridge cannot filter', async () => {
  const { k, fd, nl } = setup({ vlans: true });
  const br = (await ensureBridgeDevice(nl, { name: 'br0', vlanFiltering: true }, { create: true }))!;
  const { host } = await plugVeth(k, { hostName: 'tsv1', peerName: 'eth0', master: br.index, nsFd: fd, where: 'x', addresses: [], vlans: { access: 10, keepDefault: false } });
  assert.deepEqual([...k.host.links.get(host.index)!.vlans!], [[10, { pvid: true, untagged: true }]]);
  const { host: trunk } = await plugVeth(k, { hostName: 'tsv2', peerName: 'eth1', master: br.index, nsFd: fd, where: 'x', addresses: [], vlans: { trunk: [30, 31] } });
  assert.deepEqual([...k.host.links.get(trunk.index)!.vlans!.keys()], [1, 30, 31]);
  const plain = setup();
  const pbr = (await ensureBridgeDevice(plain.nl, { name: 'br0' }, { create: true }))!;
  const port = await plain.k.netlink().createVeth({ name: 'tsv1', peerName: 'eth0', peerNetnsFd: plain.fd, master: pbr.index });
  await assert.rejects(setPortVlans(plain.nl, port.index, { access: 10 }), (e) => e instanceof SyscallError && e.errno === 'EOPNOTSUPP');
  await setPortVlans(plain.nl, port.index, {}); // nothing asked, nothing done
});

test('parseMac: colon or dash form, lower-cased; multicast, zero and junk refused', () => {
  assert.equal(parseMac('02-42-AC-11-00-02'), '02:42:ac:11:00:02');
  for (const bad of ['01:00:5e:00:00:01', '00:00:00:00:00:00', '02:42:ac:11:00', 'zz:42:ac:11:00:02', 42]) {
    assert.throws(() => parseMac(bad), (e) => e instanceof TsnetError && e.code === 'INVALID_CONFIG', String(bad));
  }
});
