import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocateAddress, planIpam, releaseAddresses, type IpamContext } from '../../src/ipam/allocator.js';
import { candidateSubnets } from '../../src/ipam/pools.js';
import { compressIpv6, formatCidr, parseCidr, parseIp, macFromIpv4 } from '../../src/ipam/addr.js';
import { TsnetError } from '../../src/errors.js';

const ctx = (over: Partial<IpamContext> = {}): IpamContext => ({ taken: [], hostRoutes: [], ulaSeed: new Uint8Array([1, 2, 3, 4, 5]), ...over });
const req = (over: Partial<Parameters<typeof planIpam>[0]> = {}) => ({ subnets: [], gateways: [], ipRanges: [], auxAddresses: {}, ipv6: false, ...over });
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as TsnetError).code;
  }
  return 'no error';
};

test("default pools come in Docker's order", () => {
  const it = candidateSubnets();
  const first = Array.from({ length: 17 }, () => formatCidr(it.next().value!));
  assert.deepEqual(first.slice(0, 4), ['172.17.0.0/16', '172.18.0.0/16', '172.19.0.0/16', '172.20.0.0/16']);
  assert.equal(first[14], '172.31.0.0/16');
  assert.equal(first[15], '192.168.0.0/20');
  assert.equal(first[16], '192.168.16.0/20');
  assert.equal([...candidateSubnets()].length, 15 + 16);
});

test('automatic subnets skip tsnet networks and host routes', () => {
  assert.equal(planIpam(req(), ctx())[0]!.subnet, '172.17.0.0/16');
  const taken = [{ cidr: parseCidr('172.17.0.0/16'), network: 'bridge' }];
  assert.equal(planIpam(req(), ctx({ taken }))[0]!.subnet, '172.18.0.0/16');
  const hostRoutes = [parseCidr('172.16.0.0/12')];
  assert.equal(planIpam(req(), ctx({ hostRoutes }))[0]!.subnet, '192.168.0.0/20');
  const all = [...candidateSubnets()].map((c) => ({ cidr: c, network: 'x' }));
  assert.equal(code(() => planIpam(req(), ctx({ taken: all }))), 'EXHAUSTED');
});

test('explicit subnets: validated, may overlap host routes but never another network', () => {
  const s = planIpam(req({ subnets: ['10.0.0.0/24'] }), ctx({ hostRoutes: [parseCidr('10.0.0.0/8')] }));
  assert.deepEqual(s[0], { subnet: '10.0.0.0/24', gateway: '10.0.0.1', auxAddresses: {}, used: { '10.0.0.1': 'gateway' } });
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/24'] }), ctx({ taken: [{ cidr: parseCidr('10.0.0.0/16'), network: 'a' }] }))), 'CONFLICT');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.5/24'] }), ctx())), 'INVALID_CONFIG');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/31'] }), ctx())), 'INVALID_CONFIG');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/24', '10.1.0.0/24'] }), ctx())), 'UNSUPPORTED', 'one subnet per family, as Docker\'s bridge driver');
  assert.equal(code(() => planIpam(req({ gateways: ['10.0.0.1'] }), ctx())), 'INVALID_CONFIG');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/24'], gateways: ['10.0.0.255'] }), ctx())), 'INVALID_CONFIG');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/24'], ipRanges: ['10.0.1.0/25'] }), ctx())), 'INVALID_CONFIG');
  assert.equal(code(() => planIpam(req({ subnets: ['10.0.0.0/24'], auxAddresses: { gw: '10.0.0.1' } }), ctx())), 'INVALID_CONFIG');
});

test('IPv6: explicit subnet, or a ULA /64 from the seed', () => {
  const s = planIpam(req({ ipv6: true }), ctx());
  assert.equal(s.length, 2);
  assert.equal(s[1]!.subnet, 'fd01:203:405::/64');
  assert.equal(s[1]!.gateway, 'fd01:203:405::1');
  const e = planIpam(req({ ipv6: true, subnets: ['2001:db8:1::/64'] }), ctx());
  assert.deepEqual(e.map((x) => x.subnet), ['172.17.0.0/16', '2001:db8:1::/64']);
});

test('allocation is serial, skips reserved addresses, wraps, and honours ip-range', () => {
  const s = planIpam(req({ subnets: ['10.0.0.0/29'], auxAddresses: { r: '10.0.0.3' } }), ctx());
  const got = ['a', 'b', 'c', 'd'].map((o) => allocateAddress(s, 4, o, 'n').address);
  assert.deepEqual(got, ['10.0.0.2', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  assert.equal(code(() => allocateAddress(s, 4, 'e', 'n')), 'EXHAUSTED');
  assert.equal(releaseAddresses(s, 'b'), 1);
  assert.equal(allocateAddress(s, 4, 'e', 'n').address, '10.0.0.4', 'wraps around to the freed address');
  const r = planIpam(req({ subnets: ['10.1.0.0/24'], ipRanges: ['10.1.0.64/30'] }), ctx());
  assert.deepEqual([1, 2, 3, 4].map((i) => allocateAddress(r, 4, `o${i}`, 'n').address), ['10.1.0.64', '10.1.0.65', '10.1.0.66', '10.1.0.67']);
  assert.equal(code(() => allocateAddress(r, 4, 'x', 'n')), 'EXHAUSTED');
  assert.equal(allocateAddress(r, 4, 'x', 'n', '10.1.0.200').address, '10.1.0.200', 'static addresses may lie outside the range');
});

test('static addresses: inside the subnet, not reserved, not taken', () => {
  const s = planIpam(req({ subnets: ['10.0.0.0/24'] }), ctx());
  assert.equal(allocateAddress(s, 4, 'a', 'n', '10.0.0.50').address, '10.0.0.50');
  assert.equal(code(() => allocateAddress(s, 4, 'b', 'n', '10.0.0.50')), 'CONFLICT');
  assert.equal(code(() => allocateAddress(s, 4, 'b', 'n', '10.0.0.1')), 'CONFLICT');
  assert.equal(code(() => allocateAddress(s, 4, 'b', 'n', '10.0.0.255')), 'INVALID_CONFIG');
  assert.equal(code(() => allocateAddress(s, 4, 'b', 'n', '10.0.1.1')), 'INVALID_CONFIG');
  assert.equal(code(() => allocateAddress(s, 4, 'b', 'n', 'fd00::1')), 'INVALID_CONFIG');
  assert.equal(code(() => allocateAddress(s, 6, 'b', 'n')), 'INVALID_CONFIG');
});

test('address text forms', () => {
  assert.equal(compressIpv6(parseIp('2001:db8:0:0:1:0:0:1').value), '2001:db8::1:0:0:1');
  assert.equal(compressIpv6(parseIp('fd00::').value), 'fd00::');
  assert.equal(compressIpv6(parseIp('::1').value), '::1');
  assert.equal(compressIpv6(parseIp('1:2:3:4:5:6:7:8').value), '1:2:3:4:5:6:7:8');
  assert.equal(macFromIpv4(parseIp('172.17.0.2').value), '02:42:ac:11:00:02');
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', 'fe80::1%eth0', 'x', '']) assert.equal(code(() => parseIp(bad)), 'INVALID_CONFIG', bad);
});
