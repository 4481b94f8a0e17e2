// The OCI config's pure parts: mount options, cgroup paths, the process object,
// and a whole config planned (namespaces, devices, device cgroup rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupPathOf, parseMountOptions, parseProcess, planFromSpec } from '../../src/runtime/oci/config.js';
import { defaultSpec } from '../../src/cli/oci.js';
import { CLONE, MS } from '../../src/runtime/plan.js';
import { InvalidConfigError, UnsupportedError } from '../../src/errors.js';

test('mount options: flags set and cleared in order, propagation apart, the rest is data', () => {
  assert.deepEqual(parseMountOptions(['nosuid', 'ro', 'rw', 'noexec', 'rbind', 'rslave', 'mode=755', 'size=1m']), {
    flags: MS.NOSUID | MS.NOEXEC | MS.BIND | MS.REC,
    propagation: [MS.SLAVE | MS.REC],
    data: ['mode=755', 'size=1m'],
  });
});

test('cgroup paths: absolute as given, relative under tsnet-oci, systemd slices refused', () => {
  assert.equal(cgroupPathOf(undefined, 'c1'), '/tsnet-oci/c1');
  assert.equal(cgroupPathOf('/k8s.io/abc', 'c1'), '/k8s.io/abc');
  assert.equal(cgroupPathOf('mine/c1', 'c1'), '/tsnet-oci/mine/c1');
  assert.throws(() => cgroupPathOf('system.slice:runc:c1', 'c1'), UnsupportedError);
  assert.throws(() => cgroupPathOf('/a/../..', 'c1'), /below the root/);
});

test('process: checked with its file and field in the error; unlimited rlimits stay 2^64-1', () => {
  const all = (1n << 41n) - 1n;
  const p = parseProcess({ args: ['sh'], cwd: '/', user: { uid: 5, gid: 6, additionalGids: [7] }, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 18446744073709551615, hard: 18446744073709551615 }], capabilities: { bounding: ['CAP_KILL'] } }, 'p.json', 'process', all);
  assert.deepEqual(p.user, { uid: 5, gid: 6, groups: [7] });
  assert.equal(p.rlimits[0]!.soft, 2n ** 64n - 1n);
  assert.equal(p.caps!.bounding, 1n << 5n);
  assert.throws(() => parseProcess({ args: [], cwd: '/' }, 'p.json', 'process', all), /^InvalidConfigError: p.json: process.args must name the command/);
  assert.throws(() => parseProcess({ args: ['sh'], cwd: '/', capabilities: { bounding: ['CAP_NOPE'] } }, 'p.json', 'process', all), /unknown capability "CAP_NOPE"/);
  assert.throws(() => parseProcess({ args: ['sh'], cwd: '/', capabilities: { bounding: ['CAP_SYS_ADMIN'] } }, 'p.json', 'process', 0n), /which tsnet itself does not have/);
  assert.throws(() => parseProcess({ args: ['sh'], cwd: '/', rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] }, 'p.json', 'process', all), /is not an rlimit/);
});

test('planFromSpec: the default spec plans new namespaces, runc\'s /dev, and device rules that allow the standard nodes', () => {
  const bundle = mkdtempSync(join(tmpdir(), 'tsnet-oci-unit-'));
  try {
    mkdirSync(join(bundle, 'rootfs'));
    const spec = defaultSpec() as any;
    spec.process.terminal = false;
    spec.linux.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }];
    spec.linux.namespaces.push({ type: 'network', path: '/proc/self/ns/net' });
    assert.throws(() => planFromSpec(spec, { id: 'c', bundle, cgroups: { version: 1, hierarchies: [['memory']] }, ownCaps: (1n << 41n) - 1n }), /repeats the namespace type "network"/);
    spec.linux.namespaces = spec.linux.namespaces.filter((n: any) => n.type !== 'network').concat({ type: 'network', path: '/proc/self/ns/net' });
    const p = planFromSpec(spec, { id: 'c', bundle, cgroups: { version: 1, hierarchies: [['memory'], ['cpu', 'cpuacct']] }, ownCaps: (1n << 41n) - 1n });
    assert.equal(p.plan.clone, CLONE.NEWPID | CLONE.NEWIPC | CLONE.NEWUTS | CLONE.NEWNS);
    assert.deepEqual(p.plan.nsjoin, [{ type: 'net', path: '/proc/self/ns/net' }]);
    assert.equal(p.plan.cgroupns, true);
    assert.equal(p.cgroupPath, '/tsnet-oci/c');
    const targets = p.plan.fs.filter((s) => s.op === 'mount').map((s) => (s as { target: string }).target);
    assert.ok(targets.includes('/dev/null') && targets.includes('/sys/fs/cgroup/cpu,cpuacct'), targets.join(' '));
    assert.ok(targets.indexOf('/dev/null') > targets.indexOf('/dev/pts'), 'the nodes after /dev/pts');
    assert.ok(p.plan.fs.some((s) => s.op === 'mknod' && s.path === '/dev/fuse'));
    const rules = p.resources.deviceRules!.map((r) => `${r.allow ? 'allow' : 'deny'} ${r.rule}`);
    assert.equal(rules[0], 'deny a');
    assert.ok(rules.includes('allow c 1:3 rwm') && rules.includes('allow c 10:229 rwm'));
    spec.process.terminal = true;
    assert.throws(() => planFromSpec(spec, { id: 'c', bundle, cgroups: { version: 1, hierarchies: [] }, ownCaps: (1n << 41n) - 1n }), InvalidConfigError);
  } finally {
    rmSync(bundle, { recursive: true, force: true });
  }
});
