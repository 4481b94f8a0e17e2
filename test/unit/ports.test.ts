import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseExpose, parsePortSpec } from '../../src/portmapper/spec.js';
import { allocatePorts, ephemeralRange, hostIPsOverlap, type AllocContext, type Published } from '../../src/portmapper/allocator.js';
import type { TsnetError } from '../../src/errors.js';

test("Docker's -p forms", () => {
  assert.deepEqual(parsePortSpec('80'), { proto: 'tcp', hostIP: '', containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('8080:80/udp'), { proto: 'udp', hostIP: '', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('127.0.0.1:8080:80'), { proto: 'tcp', hostIP: '127.0.0.1', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('127.0.0.1::80'), { proto: 'tcp', hostIP: '127.0.0.1', containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('[::1]:8080:80'), { proto: 'tcp', hostIP: '::1', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('[2001:db8::1]::80/sctp'), { proto: 'sctp', hostIP: '2001:db8::1', containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parsePortSpec('8000-8010:7000-7010'), { proto: 'tcp', hostIP: '', hostPort: 8000, hostPortEnd: 8010, containerPort: 7000, containerPortEnd: 7010 });
  assert.deepEqual(parsePortSpec('8000-8010:80'), { proto: 'tcp', hostIP: '', hostPort: 8000, hostPortEnd: 8010, containerPort: 80, containerPortEnd: 80 });
  assert.deepEqual(parseExpose('53/udp'), { proto: 'udp', hostIP: '', containerPort: 53, containerPortEnd: 53 });
  for (const bad of ['', '0', '65536', 'a:80', '80/icmp', '8000-8001:80-82', '90-80', '::1:80:80', '[127.0.0.1]:80:80', '1.2.3:80:80', ':']) {
    assert.throws(() => parsePortSpec(bad), (e: TsnetError) => e.code === 'INVALID_CONFIG', bad);
  }
});

test('ephemeral range and reserved ports from /proc text; fallback', () => {
  const r = ephemeralRange('32768\t60999\n', '8080,9000-9002');
  assert.equal(r.first, 32768);
  assert.equal(r.last, 60999);
  assert.deepEqual([...r.reserved].sort(), [8080, 9000, 9001, 9002]);
  assert.deepEqual([ephemeralRange(undefined, undefined).first, ephemeralRange('junk', '').last], [49153, 65535]);
});

test('host address overlap', () => {
  assert.ok(hostIPsOverlap('', '127.0.0.1'));
  assert.ok(hostIPsOverlap('0.0.0.0', '10.0.0.1'));
  assert.ok(!hostIPsOverlap('0.0.0.0', '::1'));
  assert.ok(hostIPsOverlap('::', '::1'));
  assert.ok(!hostIPsOverlap('10.0.0.1', '10.0.0.2'));
});

const ctx = (published: Published[] = [], busy: number[] = []): AllocContext => ({
  published,
  ephemeral: { first: 40000, last: 40009, reserved: new Set([40001]) },
  inUse: async (_p, _ip, port) => busy.includes(port),
});
const code = async (p: Promise<unknown>) => p.then(() => 'ok', (e: TsnetError) => e.code);

test('allocation: exact ports, conflicts named, ranges, ephemeral picks', async () => {
  const pub: Published[] = [{ proto: 'tcp', hostIP: '', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80, owner: 'web' }];
  await assert.rejects(allocatePorts(parsePortSpec('8080:80'), ctx(pub)), /already published by sandbox web/);
  await assert.rejects(allocatePorts(parsePortSpec('127.0.0.1:8080:80'), ctx(pub)), /already published by sandbox web/);
  assert.equal((await allocatePorts(parsePortSpec('8080:80/udp'), ctx(pub))).hostPort, 8080);
  await assert.rejects(allocatePorts(parsePortSpec('9090:80'), ctx([], [9090])), /in use by another program/);
  assert.equal((await allocatePorts(parsePortSpec('9000-9005:80'), ctx([], [9000, 9001]))).hostPort, 9002);
  assert.equal(await code(allocatePorts(parsePortSpec('9000-9001:80'), ctx([], [9000, 9001]))), 'PORT_IN_USE');
  for (let i = 0; i < 20; i++) {
    const b = await allocatePorts(parsePortSpec('80'), ctx([], [40000, 40002]));
    assert.ok(b.hostPort >= 40003 && b.hostPort <= 40009, String(b.hostPort));
  }
  const wide = await allocatePorts(parsePortSpec('7000-7002'), ctx());
  assert.equal(wide.hostPortEnd - wide.hostPort, 2);
  assert.ok(wide.hostPort > 40001 || wide.hostPort + 2 < 40001);
  assert.equal(await code(allocatePorts(parsePortSpec('1-20'), ctx())), 'EXHAUSTED');
});
