// Driver policy without a kernel: join rules and endpoint planning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BridgeDriver } from '../../drivers/bridge/index.js';
import { HostDriver } from '../../drivers/host/index.js';
import { NullDriver } from '../../drivers/null/index.js';
import { planIpam } from '../../src/ipam/allocator.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../../src/controller/model.js';
import type { JoinContext } from '../../src/driverapi/driver.js';

const sbx = (kind: SandboxRecord['kind'] = 'named'): SandboxRecord => ({ id: 's1', name: 'web', kind, key: '/k', phase: 'ready', created: '' });
function bridgeNet(opts: { internal?: boolean; ipv6?: boolean; options?: Record<string, string> } = {}): NetworkRecord {
  const subnets = planIpam({ subnets: ['10.3.0.0/24', ...(opts.ipv6 ? ['fd00:3::/64'] : [])], gateways: [], ipRanges: [], auxAddresses: {}, ipv6: Boolean(opts.ipv6) }, { taken: [], hostRoutes: [], ulaSeed: new Uint8Array(5) });
  return {
    id: 'n1', name: 'front', driver: 'bridge', created: '', phase: 'ready', predefined: false, internal: Boolean(opts.internal), enableIPv6: Boolean(opts.ipv6),
    options: opts.options ?? {}, labels: {}, subnets, bridge: { name: 'br0', owned: true, mtu: 1500, icc: true, masquerade: true },
  };
}
const sibling = (ifname: string, driver = 'bridge'): JoinContext['siblings'][number] => ({
  endpoint: { id: `e-${ifname}`, networkId: 'x', sandboxId: 's1', phase: 'ready', ifname } as EndpointRecord,
  network: { ...bridgeNet(), id: 'x', name: `other-${ifname}`, driver },
});
const noRandom = (n: number) => Buffer.alloc(n, 0xab);

test('bridge planEndpoint: next free ethN, tsv host end, serial addresses, the gateway unless internal, Docker MACs, host_binding_ipv4', () => {
  const d = new BridgeDriver('inst');
  const net = bridgeNet({ ipv6: true, options: { 'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1' } });
  const join = { sandbox: sbx(), siblings: [sibling('eth0'), sibling('eth2')] };
  const p = d.planEndpoint(net, '0123456789abcdef', join, { publishing: false }, noRandom);
  assert.deepEqual(p, {
    ifname: 'eth1', hostIfname: 'tsv0123456789ab', defaultHostIP: '127.0.0.1',
    ipv4: '10.3.0.2/24', gateway4: '10.3.0.1', mac: '02:42:0a:03:00:02', ipv6: 'fd00:3::2/64', gateway6: 'fd00:3::1',
  });
  const q = d.planEndpoint(bridgeNet({ internal: true, options: { 'com.docker.network.container_iface_prefix': 'net' } }), 'ffff', { sandbox: sbx(), siblings: [] }, { ip: '10.3.0.77', publishing: false }, noRandom);
  assert.equal(q.ifname, 'net0');
  assert.equal(q.ipv4, '10.3.0.77/24');
  assert.equal(q.gateway4, undefined, 'internal networks give no gateway');
});

test('join rules: bridge, host and null drivers refuse what they cannot join, before anything is allocated', () => {
  const b = new BridgeDriver('inst');
  const net = bridgeNet();
  assert.throws(() => b.checkJoin(net, { sandbox: sbx(), siblings: [sibling('eth0')] }, { ifname: 'eth0', publishing: false }), /already has an interface named eth0/);
  assert.throws(() => b.checkJoin(net, { sandbox: sbx(), siblings: [] }, { ifname: 'a/b', publishing: false }), /may only contain/);
  assert.throws(() => b.checkJoin(net, { sandbox: sbx('host'), siblings: [] }, { publishing: false }), /host's network namespace/);
  assert.throws(() => b.checkJoin(bridgeNet({ internal: true }), { sandbox: sbx(), siblings: [] }, { publishing: true }), /internal: ports cannot be published/);
  assert.throws(() => b.checkJoin(net, { sandbox: sbx(), siblings: [] }, { ip6: 'fd00::9', publishing: false }), /does not have IPv6 enabled/);
  assert.doesNotThrow(() => b.checkJoin(net, { sandbox: sbx(), siblings: [sibling('eth0')] }, { publishing: true }));
  const none = { ...net, driver: 'null', name: 'none' };
  assert.throws(() => new NullDriver().checkJoin(none, { sandbox: sbx(), siblings: [sibling('eth0')] }, { publishing: false }), /connected to other networks/);
  assert.throws(() => new NullDriver().checkJoin(none, { sandbox: sbx(), siblings: [] }, { ip: '10.0.0.1', publishing: false }), /apply to bridge networks only/);
  assert.ok(new NullDriver().exclusive);
  const host = { ...net, driver: 'host', name: 'host' };
  assert.throws(() => new HostDriver().checkJoin(host, { sandbox: sbx(), siblings: [] }, { publishing: false }), /only sandboxes created with --network host/);
  assert.doesNotThrow(() => new HostDriver().checkJoin(host, { sandbox: sbx('host'), siblings: [] }, { publishing: false }));
});
