// The pure projections of the state: firewall wish, proxy bindings, binding owners.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { desiredFirewall, lostMessage, ownerOf, proxyBindings } from '../../src/controller/desired.js';
import type { EndpointRecord, NetworkRecord, State } from '../../src/controller/model.js';
import type { FwNetwork } from '../../src/firewall/backend.js';

const net = (id: string, name: string, phase: NetworkRecord['phase'] = 'ready'): NetworkRecord => ({
  id, name, driver: 'bridge', created: '', phase, predefined: false, internal: false, enableIPv6: false, options: {}, labels: {}, subnets: [],
  bridge: { name: `br-${name}`, owned: true, mtu: 1500, icc: true, masquerade: true },
});
const ep = (id: string, networkId: string, extra: Partial<EndpointRecord>): EndpointRecord => ({ id, networkId, sandboxId: `s-${id}`, phase: 'ready', ifname: 'eth0', ...extra });

function state(): State {
  return {
    version: 1,
    networks: { n1: net('n1', 'front'), n2: net('n2', 'gone', 'removing') },
    sandboxes: { 's-e4': { id: 's-e4', name: 'web', kind: 'named', key: '/k', phase: 'ready', created: '' } },
    endpoints: {
      e4: ep('e4', 'n1', {
        ipv4: '10.1.0.2/24',
        ports: [
          { proto: 'tcp', hostIP: '', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 },
          { proto: 'udp', hostIP: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353, containerPort: 53, containerPortEnd: 53 },
          { proto: 'tcp', hostIP: '::1', hostPort: 9000, hostPortEnd: 9001, containerPort: 7000, containerPortEnd: 7001 },
          { proto: 'sctp', hostIP: '', hostPort: 3868, hostPortEnd: 3868, containerPort: 3868, containerPortEnd: 3868 },
        ],
      }),
      e6: ep('e6', 'n1', { ipv4: '10.1.0.3/24', ipv6: 'fd00::3/64', ports: [{ proto: 'tcp', hostIP: '', hostPort: 8443, hostPortEnd: 8443, containerPort: 443, containerPortEnd: 443 }] }),
      gone: ep('gone', 'n1', { phase: 'removing', ipv4: '10.1.0.9/24', ports: [{ proto: 'tcp', hostIP: '', hostPort: 1, hostPortEnd: 1, containerPort: 1, containerPortEnd: 1 }] }),
      onGone: ep('onGone', 'n2', { ipv4: '10.2.0.2/24', ports: [{ proto: 'tcp', hostIP: '', hostPort: 2, hostPortEnd: 2, containerPort: 2, containerPortEnd: 2 }] }),
    },
  };
}
const fwOf = (n: NetworkRecord): FwNetwork => ({ id: n.id, name: n.name, bridge: n.bridge!.name, subnets: [], internal: false, icc: true, masquerade: true });

test('desiredFirewall: live networks and endpoints only; a binding per family; proxied IPv6 of IPv4-only endpoints; who serves loopback', () => {
  const fw = desiredFirewall(state(), fwOf, { proxy: true });
  assert.deepEqual(fw.networks.map((n) => n.name), ['front'], 'a network being removed is left out');
  const b = fw.bindings!.map((x) => `${x.endpointId} ${x.family} ${x.proto} ${x.hostIP || '*'}:${x.hostPort}`);
  assert.deepEqual(b, ['e4 4 tcp *:8080', 'e4 4 udp 127.0.0.1:5353', 'e4 4 sctp *:3868', 'e6 4 tcp *:8443', 'e6 6 tcp *:8443']);
  assert.deepEqual(fw.proxied, [
    { family: 6, proto: 'tcp', hostIP: '', port: 8080, portEnd: 8080 },
    { family: 6, proto: 'tcp', hostIP: '::1', port: 9000, portEnd: 9001 },
  ], 'the IPv4-only endpoint\'s IPv6 listeners, not SCTP, not the dual-stack endpoint');
  assert.equal(fw.localhost, 'proxy');
  const nat = desiredFirewall(state(), fwOf, { proxy: false });
  assert.deepEqual(nat.proxied, [], 'nothing is proxied without the proxy');
  assert.equal(nat.localhost, 'nat');
});

test('proxyBindings: both families for every-address ports, across families where the endpoint lacks one, ranges expanded, no SCTP', () => {
  const b = proxyBindings(state()).map((x) => `${x.proto} ${x.hostIP}:${x.hostPort} -> ${x.targetIP}:${x.targetPort}`);
  assert.deepEqual(b, [
    'tcp 0.0.0.0:8080 -> 10.1.0.2:80', 'tcp :::8080 -> 10.1.0.2:80',
    'udp 127.0.0.1:5353 -> 10.1.0.2:53',
    'tcp ::1:9000 -> 10.1.0.2:7000', 'tcp ::1:9001 -> 10.1.0.2:7001',
    'tcp 0.0.0.0:8443 -> 10.1.0.3:443', 'tcp :::8443 -> fd00::3:443',
    'tcp 0.0.0.0:2 -> 10.2.0.2:2', 'tcp :::2 -> 10.2.0.2:2',
  ]);
});

test('ownerOf and lostMessage: a proxy binding names its sandbox', () => {
  const s = state();
  assert.equal(ownerOf(s, { proto: 'tcp', hostIP: '::', hostPort: 8080 })?.id, 'e4');
  assert.equal(ownerOf(s, { proto: 'tcp', hostIP: '::1', hostPort: 9001 })?.id, 'e4');
  assert.equal(ownerOf(s, { proto: 'udp', hostIP: '0.0.0.0', hostPort: 5353 }), undefined, 'a 127.0.0.1 port is not every address');
  const msg = lostMessage(s, { binding: { proto: 'tcp', hostIP: '::', hostPort: 8080, targetIP: '', targetPort: 80 }, code: 'EADDRINUSE' }, ownerOf(s, { proto: 'tcp', hostIP: '::', hostPort: 8080 }));
  assert.equal(msg, 'published port [::]:8080/tcp of sandbox web is not held by the userland proxy: another program has it (retrying every few seconds)');
});
