// Controller logic over the in-memory kernel (no root): plumbing, rollback,
// reconcile and IPAM decisions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKernel } from '../../src/system/fake/index.js';
import { compose } from '../../src/compose/index.js';
import { silentLogger } from '../../src/log.js';
import type { TsnetError } from '../../src/errors.js';

async function withController(body: (k: FakeKernel, c: ReturnType<typeof compose>['controller'], dir: string) => Promise<void>, setup?: (k: FakeKernel) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-unit-'));
  const k = new FakeKernel();
  setup?.(k);
  try {
    const { controller } = compose({ root: join(dir, 'root'), runDir: join(dir, 'run'), firewall: 'iptables' }, silentLogger(), k);
    await body(k, controller, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const hostLinks = (k: FakeKernel) => [...k.host.links.values()].map((l) => l.name).sort();

test('first use creates the predefined networks and the tsnet0 bridge with its gateway', () =>
  withController(async (k, c) => {
    const s = await c.snapshot();
    assert.deepEqual(Object.values(s.networks).map((n) => n.name).sort(), ['bridge', 'host', 'none']);
    const br = [...k.host.links.values()].find((l) => l.name === 'tsnet0')!;
    assert.equal(br.kind, 'bridge');
    assert.ok(br.up);
    assert.match(br.alias!, /^tsnet:[0-9a-f]{8}:bridge$/);
    assert.deepEqual(k.host.addrs.filter((a) => a.index === br.index).map((a) => `${a.address}/${a.prefixLen}`), ['172.17.0.1/16']);
    assert.equal(k.sysctl.get('net.ipv4.ip_forward'), '1');
    const restore = k.commands.find((x) => x.argv[0] === 'iptables-restore');
    assert.match(restore?.input ?? '', /-A TSNET-POSTROUTING -s 172\.17\.0\.0\/16 ! -o tsnet0 .* -j MASQUERADE/);
  }));

test('the default bridge avoids a subnet the host already routes', () =>
  withController(
    async (_k, c) => {
      const s = await c.snapshot();
      assert.equal(Object.values(s.networks).find((n) => n.name === 'bridge')!.subnets[0]!.subnet, '172.18.0.0/16');
    },
    (k) => {
      const eth = k.host.add({ name: 'eth0', kind: 'veth', mtu: 1500, up: true });
      k.host.routes.push({ family: 4, dst: '172.17.0.0', dstLen: 16, oif: eth.index, table: 254 });
    },
  ));

test('connect plumbs a veth into the sandbox; disconnect removes both ends and frees the address', () =>
  withController(async (k, c, dir) => {
    await c.createSandbox({ name: 'a', network: 'none' });
    await c.disconnect('none', 'a');
    const ep = await c.connect('bridge', 'a');
    assert.equal(ep.ipv4, '172.17.0.2/16');
    assert.equal(ep.mac, '02:42:ac:11:00:02');
    const sbx = k.pins.get(join(dir, 'run', 'netns', 'a'))!;
    const eth0 = [...sbx.links.values()].find((l) => l.name === 'eth0')!;
    assert.ok(eth0.up);
    assert.deepEqual(sbx.addrs.map((a) => a.address), ['172.17.0.2']);
    assert.equal(sbx.routes[0]!.gateway, '172.17.0.1');
    assert.ok(hostLinks(k).includes(ep.hostIfname!));
    await c.disconnect('bridge', 'a');
    assert.ok(!hostLinks(k).includes(ep.hostIfname!));
    assert.ok(![...sbx.links.values()].some((l) => l.name === 'eth0'));
    const again = await c.connect('bridge', 'a');
    assert.equal(again.ipv4, '172.17.0.3/16', 'serial allocation moves on');
  }));

test('a kernel failure midway rolls back links, records and addresses', () =>
  withController(async (k, c) => {
    await c.createSandbox({ name: 'a', network: 'none' });
    await c.disconnect('none', 'a');
    const before = hostLinks(k);
    k.failOn = /add route/;
    await assert.rejects(c.connect('bridge', 'a'), (e: TsnetError) => e.code === 'SYSCALL');
    assert.deepEqual(hostLinks(k), before);
    const s = await c.snapshot();
    assert.equal(Object.values(s.endpoints).length, 0);
    const bridge = Object.values(s.networks).find((n) => n.name === 'bridge')!;
    assert.deepEqual(Object.values(bridge.subnets[0]!.used), ['gateway']);
    k.failOn = /create bridge/;
    await assert.rejects(c.createNetwork({ name: 'x' }));
    assert.ok(!Object.values((await c.snapshot()).networks).some((n) => n.name === 'x'));
  }));

test('reconcile re-creates a lost bridge and re-plumbs its endpoints; drops dead sandboxes; removes leaked tagged links', () =>
  withController(async (k, c, dir) => {
    await c.createSandbox({ name: 'a' });
    await c.createSandbox({ name: 'b' });
    const br = [...k.host.links.values()].find((l) => l.name === 'tsnet0')!;
    k.host.remove(br.index);
    for (const l of [...k.host.links.values()]) if (l.name.startsWith('tsv')) k.host.remove(l.index);
    const tag = br.alias!.split(':').slice(0, 2).join(':');
    k.host.add({ name: 'leak0', kind: 'bridge', mtu: 1500, alias: `${tag}:old`, up: true });
    k.host.add({ name: 'other0', kind: 'bridge', mtu: 1500, alias: 'tsnet:ffffffff:someone-else', up: true });
    k.pins.delete(join(dir, 'run', 'netns', 'b')); // b's namespace disappears
    await c.reconcile();
    const links = hostLinks(k);
    assert.ok(links.includes('tsnet0'));
    assert.equal(links.filter((l) => l.startsWith('tsv')).length, 1, "a's veth is back, b's is not");
    assert.ok(!links.includes('leak0'));
    assert.ok(links.includes('other0'), "another instance's links are not ours to remove");
    const s = await c.snapshot();
    assert.deepEqual(Object.values(s.sandboxes).map((x) => x.name), ['a']);
    const eth0 = [...k.pins.get(join(dir, 'run', 'netns', 'a'))!.links.values()].find((l) => l.name === 'eth0');
    assert.ok(eth0, 'eth0 re-created in a');
  }));

test('multi-homed sandboxes: eth0, eth1 and one default route', () =>
  withController(async (k, c, dir) => {
    await c.createNetwork({ name: 'n2', subnets: ['10.2.0.0/24'] });
    await c.createSandbox({ name: 'a' });
    const ep = await c.connect('n2', 'a');
    assert.equal(ep.ifname, 'eth1');
    const ns = k.pins.get(join(dir, 'run', 'netns', 'a'))!;
    assert.equal(ns.routes.filter((r) => r.dstLen === 0).length, 1);
    const busy = await c.removeNetworks(['n2', 'nope']);
    assert.deepEqual(busy.removed, []);
    assert.match(String(busy.failed[0]?.error), /active endpoints/);
    assert.match(String(busy.failed[1]?.error), /not found/);
    assert.deepEqual((await c.removeNetworks(['nope'], { force: true })).failed, [], '-f: a missing name is no failure');
    await c.disconnect('n2', 'a');
    assert.deepEqual(await c.removeNetworks(['n2']), { removed: ['n2'], failed: [] });
  }));

test('default route re-election: disconnecting the network that gave it moves it to the next one with a gateway, in name order', () =>
  withController(async (k, c, dir) => {
    await c.createNetwork({ name: 'zeta', subnets: ['10.5.0.0/24'] });
    await c.createNetwork({ name: 'alpha', subnets: ['10.6.0.0/24'] });
    await c.createNetwork({ name: 'inner', subnets: ['10.7.0.0/24'], internal: true });
    await c.createSandbox({ name: 'a' }); // bridge: 172.17.0.1 gives the default route
    for (const n of ['zeta', 'inner', 'alpha']) await c.connect(n, 'a');
    const ns = k.pins.get(join(dir, 'run', 'netns', 'a'))!;
    const defaults = () => ns.routes.filter((r) => r.family === 4 && r.dstLen === 0).map((r) => r.gateway);
    assert.deepEqual(defaults(), ['172.17.0.1']);
    await c.disconnect('bridge', 'a');
    assert.deepEqual(defaults(), ['10.6.0.1'], 'alpha before zeta; the internal network has no gateway');
    await c.disconnect('zeta', 'a');
    assert.deepEqual(defaults(), ['10.6.0.1'], 'an unrelated disconnect keeps it');
    await c.disconnect('alpha', 'a');
    assert.deepEqual(defaults(), [], 'only the internal network is left: no default route');
  }));
