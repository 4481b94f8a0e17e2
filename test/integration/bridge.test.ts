// Bridge driver on the real kernel, inside throwaway host namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, withHost } from './harness.js';

const skip = skipReason('ping', 'nft');

test('two sandboxes on the default bridge reach each other and their gateway', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'a']);
    h.ok(['sandbox', 'create', 'b']);
    const net = h.inspect('network', 'bridge');
    assert.equal(net.Driver, 'bridge');
    assert.equal(net.IPAM.Config[0].Subnet, '172.17.0.0/16');
    assert.equal(net.IPAM.Config[0].Gateway, '172.17.0.1');
    const eps = Object.values(net.Containers) as Array<{ Name: string; IPv4Address: string; MacAddress: string }>;
    assert.equal(eps.length, 2);
    const a = eps.find((e) => e.Name === 'a')!;
    const b = eps.find((e) => e.Name === 'b')!;
    assert.equal(a.IPv4Address, '172.17.0.2/16');
    assert.equal(a.MacAddress, '02:42:ac:11:00:02', 'MAC derives from the IPv4 address as in Docker');
    assert.ok(h.ping('a', b.IPv4Address.split('/')[0]!), 'a pings b');
    assert.ok(h.ping('b', '172.17.0.1'), 'b pings the gateway');
    // Default route via the gateway, lo up, eth0 named as in Docker.
    assert.match(h.inSandbox('a', 'ip', 'route').stdout, /default via 172\.17\.0\.1 dev eth0/);
    assert.match(h.inSandbox('a', 'ip', 'link', 'show', 'lo').stdout, /UP/);
    assert.ok(h.links().includes('tsnet0'));
  }));

test('disconnecting the network that gives the default route moves it to another network\'s gateway (Docker re-elects)', { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--subnet', '10.5.0.0/24', 'zeta']);
    h.ok(['network', 'create', '--subnet', '10.6.0.0/24', '--internal', 'alpha']);
    h.ok(['sandbox', 'create', 'a']);
    h.ok(['network', 'connect', 'zeta', 'a']);
    h.ok(['network', 'connect', 'alpha', 'a']);
    assert.match(h.inSandbox('a', 'ip', 'route').stdout, /default via 172\.17\.0\.1 dev eth0/);
    h.ok(['network', 'disconnect', 'bridge', 'a']);
    const route = h.inSandbox('a', 'ip', 'route').stdout;
    assert.match(route, /default via 10\.5\.0\.1 dev eth1/, 'zeta (not the internal alpha) gives the default route now');
    assert.equal(route.match(/^default/gm)?.length, 1);
    h.ok(['network', 'disconnect', 'zeta', 'a']);
    assert.doesNotMatch(h.inSandbox('a', 'ip', 'route').stdout, /^default/m, 'an internal network gives no default route');
  }));

for (const fw of ['iptables', 'nftables']) test(`${fw}: sandboxes on two bridge networks cannot reach each other`, { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--subnet', '10.1.0.0/24', 'n1']);
    h.ok(['network', 'create', '--subnet', '10.2.0.0/24', 'n2']);
    h.ok(['sandbox', 'create', '--network', 'n1', 'a']);
    h.ok(['sandbox', 'create', '--network', 'n2', 'b']);
    assert.ok(h.ping('a', '10.1.0.1'), 'a reaches its own gateway');
    assert.ok(h.ping('b', '10.2.0.1'));
    assert.ok(!h.ping('a', '10.2.0.2'), 'n1 -> n2 is dropped');
    assert.ok(!h.ping('b', '10.1.0.2'), 'n2 -> n1 is dropped');
    // Connecting a to n2 as well makes b reachable over the shared network.
    h.ok(['network', 'connect', 'n2', 'a']);
    assert.match(h.inSandbox('a', 'ip', '-o', 'addr', 'show', 'eth1').stdout, /10\.2\.0\.3\/24/);
    assert.ok(h.ping('a', '10.2.0.2'));
  }, { firewall: fw }));

for (const fw of ['iptables', 'nftables']) test(`${fw}: a sandbox reaches the outside through masquerade; enable_ip_masquerade=false turns it off`, { skip }, () =>
  withHost((h) => {
    const outside = h.addOutside();
    h.ok(['sandbox', 'create', 'a']);
    // "outside" has no route back to 172.17.0.0/16: a reply only arrives if the source was rewritten.
    assert.ok(h.ping('a', '198.51.100.2'), 'masqueraded ping to the outside');
    h.ok(['network', 'create', '--subnet', '10.3.0.0/24', '-o', 'com.docker.network.bridge.enable_ip_masquerade=false', 'nomasq']);
    h.ok(['sandbox', 'create', '--network', 'nomasq', 'b']);
    assert.ok(!h.ping('b', '198.51.100.2'), 'no masquerade: the outside cannot answer');
    // Nothing from the outside reaches a container address directly.
    h.inNs(outside, 'ip', 'route', 'add', '172.17.0.0/16', 'via', '198.51.100.1');
    assert.notEqual(h.inNs(outside, 'ping', '-c', '1', '-W', '1', '172.17.0.2').code, 0, 'inbound to a container IP is dropped');
  }, { firewall: fw }));

for (const fw of ['iptables', 'nftables']) test(`${fw}: an internal network has no route out`, { skip }, () =>
  withHost((h) => {
    h.addOutside();
    h.ok(['network', 'create', '--internal', '--subnet', '10.4.0.0/24', 'int']);
    h.ok(['sandbox', 'create', '--network', 'int', 'a']);
    h.ok(['sandbox', 'create', '--network', 'int', 'b']);
    assert.doesNotMatch(h.inSandbox('a', 'ip', 'route').stdout, /default/);
    assert.ok(!h.ping('a', '198.51.100.2'));
    assert.ok(h.ping('a', '10.4.0.3'), 'members of an internal network still talk');
    assert.equal(h.inspect('network', 'int').Internal, true);
    if (fw === 'iptables') assert.doesNotMatch(h.iptables(), /-s 10\.4\.0\.0\/24 .*MASQUERADE/);
    else assert.doesNotMatch(h.sh('nft', 'list', 'set', 'inet', 'tsnet', 'masq4').stdout, /10\.4\.0\.0/);
  }, { firewall: fw }));

for (const fw of ['iptables', 'nftables']) test(`${fw}: enable_icc=false blocks traffic between sandboxes of one bridge but not to the gateway`, { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--subnet', '10.5.0.0/24', '-o', 'com.docker.network.bridge.enable_icc=false', 'noicc']);
    h.ok(['sandbox', 'create', '--network', 'noicc', 'a']);
    h.ok(['sandbox', 'create', '--network', 'noicc', 'b']);
    assert.ok(h.ping('a', '10.5.0.1'));
    assert.ok(!h.ping('a', '10.5.0.3'));
    assert.ok(!h.ping('b', '10.5.0.2'));
  }, { firewall: fw }));

test('custom bridge name, MTU, static IP, ip-range and aux addresses', { skip }, () =>
  withHost((h) => {
    h.ok([
      'network', 'create', '--subnet', '10.6.0.0/24', '--gateway', '10.6.0.254', '--ip-range', '10.6.0.128/25',
      '--aux-address', 'router=10.6.0.128', '--mtu', '1400', '-o', 'com.docker.network.bridge.name=br-custom', 'custom',
    ]);
    h.ok(['sandbox', 'create', '--network', 'custom', 'a']);
    h.ok(['sandbox', 'create', '--network', 'custom', '--ip', '10.6.0.10', '--ifname', 'net0', 'b']);
    const a = h.inspect('sandbox', 'a').Networks.custom;
    assert.equal(a.IPAddress, '10.6.0.129', 'first free address of the ip-range, skipping the aux address');
    assert.equal(a.Gateway, '10.6.0.254');
    assert.match(h.inSandbox('b', 'ip', '-o', 'addr', 'show', 'net0').stdout, /10\.6\.0\.10\/24/);
    assert.match(h.inSandbox('a', 'ip', 'link', 'show', 'eth0').stdout, /mtu 1400/);
    assert.match(h.sh('ip', 'link', 'show', 'br-custom').stdout, /mtu 1400/);
    assert.ok(h.ping('a', '10.6.0.10'));
    const cfg = h.inspect('network', 'custom').IPAM.Config[0];
    assert.deepEqual(cfg, { Subnet: '10.6.0.0/24', Gateway: '10.6.0.254', IPRange: '10.6.0.128/25', AuxiliaryAddresses: { router: '10.6.0.128' } });
  }));

test('dual stack: IPv6 addresses, routes and reachability', { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--ipv6', '--subnet', '10.7.0.0/24', '--subnet', 'fd00:7::/64', 'v6']);
    h.ok(['sandbox', 'create', '--network', 'v6', 'a']);
    h.ok(['sandbox', 'create', '--network', 'v6', '--ip6', 'fd00:7::99', 'b']);
    const a = h.inspect('sandbox', 'a').Networks.v6;
    assert.equal(a.GlobalIPv6Address, 'fd00:7::2');
    assert.equal(a.IPv6Gateway, 'fd00:7::1');
    assert.match(h.inSandbox('a', 'ip', '-6', 'route').stdout, /default via fd00:7::1/);
    assert.ok(h.ping('a', 'fd00:7::99'), 'IPv6 between sandboxes');
    assert.ok(h.ping('b', 'fd00:7::1'), 'IPv6 to the gateway');
    // --ipv6 without a subnet picks a ULA /64.
    h.ok(['network', 'create', '--ipv6', 'auto6']);
    const cfg = h.inspect('network', 'auto6').IPAM.Config as Array<{ Subnet: string }>;
    assert.equal(cfg.length, 2);
    assert.match(cfg[1]!.Subnet, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/);
  }));

test('disconnect and rm leave no link, rule, address or namespace', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'warm']); // the predefined bridge and its rules exist from here on
    h.ok(['sandbox', 'rm', 'warm']);
    const links0 = h.links();
    const fw0 = h.iptables();
    h.ok(['network', 'create', '--subnet', '10.8.0.0/24', 'tmp']);
    h.ok(['sandbox', 'create', '--network', 'tmp', 'a']);
    h.ok(['network', 'connect', 'bridge', 'a']);
    assert.ok(h.links().length > links0.length);
    h.ok(['network', 'disconnect', 'bridge', 'a']);
    assert.equal(h.inSandbox('a', 'ip', 'link', 'show', 'eth1').code, 1, 'eth1 is gone from the sandbox');
    assert.equal(Object.keys(h.inspect('network', 'bridge').Containers).length, 0);
    h.ok(['sandbox', 'rm', 'a']);
    h.ok(['network', 'rm', 'tmp']);
    assert.deepEqual(h.links(), links0);
    assert.equal(h.iptables(), fw0);
    assert.equal(h.ok(['sandbox', 'ls', '-q']), '');
    assert.equal(h.sh('ls', `${h.runDir}/netns`).stdout.trim(), '');
    // Serial allocation, as Docker's: warm had .2 and a had .3 (both freed); the next sandbox
    // gets the address after the last one handed out, not one just released.
    h.ok(['sandbox', 'create', 'c']);
    assert.equal(h.inspect('sandbox', 'c').Networks.bridge.IPAddress, '172.17.0.4');
  }));
