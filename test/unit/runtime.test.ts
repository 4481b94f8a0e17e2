// The runtime's pure parts: tar parsing, safe layer unpacking, flags, plans, cgroup writes, seccomp, references.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TarReader, type TarHeader } from '../../src/runtime/images/tar.js';
import { LayerUnpacker, cleanEntryPath, type LayerFs } from '../../src/runtime/images/unpack.js';
import { parseRef, refKey } from '../../src/runtime/images/ref.js';
import { parseBytes, parseUlimit, parseSignal, parseVolume, parseTmpfs, parseMount, planContainer, mergeEnv } from '../../src/runtime/spec.js';
import { parseCgroupLayout, planCgroupWrites, sharesToWeight } from '../../src/runtime/cgroups.js';
import { capabilitySet, capMask, defaultSeccomp, parseSeccompProfile } from '../../src/runtime/security.js';
import { renderContainerPlan, renderExecPlan, standardMounts } from '../../src/runtime/plan.js';
import { resolveUser } from '../../src/runtime/users.js';
import type { ImageRecord } from '../../src/runtime/images/store.js';
import type { FileKind } from '../../src/system/kernel.js';
import { ImageInvalidError, InvalidConfigError } from '../../src/errors.js';

/** A ustar header block for name (checksum filled in). */
function header(name: string, opts: { type?: string; size?: number; link?: string; mode?: number } = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write(`${(opts.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${(opts.size ?? 0).toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write(opts.type ?? '0', 156);
  if (opts.link) h.write(opts.link, 157, 100);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}
const body = (text: string) => Buffer.concat([Buffer.from(text), Buffer.alloc((512 - (text.length % 512)) % 512)]);
const archive = (...parts: Buffer[]) => Buffer.concat([...parts, Buffer.alloc(1024)]);

class FakeLayer implements LayerFs {
  nodes = new Map<string, { kind: FileKind; data?: string; target?: string; dev?: string; xattrs?: Record<string, string> }>();
  kind(rel: string) {
    return this.nodes.get(rel)?.kind;
  }
  mkdir(rel: string) {
    this.nodes.set(rel, { kind: 'dir' });
  }
  create(rel: string) {
    const n = { kind: 'file' as FileKind, data: '' };
    this.nodes.set(rel, n);
    return { write: (b: Buffer) => void (n.data += b.toString()), close: () => undefined };
  }
  symlink(target: string, rel: string) {
    this.nodes.set(rel, { kind: 'symlink', target });
  }
  link(existing: string, rel: string) {
    this.nodes.set(rel, this.nodes.get(existing)!);
  }
  mknod(rel: string, type: string, _mode: number, major: number, minor: number) {
    this.nodes.set(rel, { kind: 'other', dev: `${type} ${major}:${minor}` });
  }
  remove(rel: string) {
    for (const k of [...this.nodes.keys()]) if (k === rel || k.startsWith(`${rel}/`)) this.nodes.delete(k);
  }
  lchown() {}
  chmod() {}
  lutimes() {}
  lsetxattr(rel: string, name: string, value: Buffer) {
    const n = this.nodes.get(rel)!;
    n.xattrs = { ...n.xattrs, [name]: value.toString() };
  }
}

function unpack(tar: Buffer, chunk = 700): FakeLayer {
  const fs = new FakeLayer();
  const u = new LayerUnpacker(fs);
  const r = new TarReader(u);
  for (let i = 0; i < tar.length; i += chunk) r.write(tar.subarray(i, i + chunk));
  r.close();
  u.finish();
  return fs;
}

test('tar: files, dirs, symlinks and hard links unpack, in any chunking', () => {
  const tar = archive(header('./etc/', { type: '5' }), header('./etc/hosts', { size: 10 }), body('127.0.0.1\n'), header('bin/sh', { type: '2', link: '/bin/busybox' }), header('etc/hosts2', { type: '1', link: 'etc/hosts' }));
  for (const chunk of [1, 100, 512, 100000]) {
    const fs = unpack(tar, chunk);
    assert.equal(fs.nodes.get('etc/hosts')?.data, '127.0.0.1\n');
    assert.equal(fs.nodes.get('bin')?.kind, 'dir', 'a missing parent is made');
    assert.deepEqual(fs.nodes.get('bin/sh'), { kind: 'symlink', target: '/bin/busybox' });
    assert.equal(fs.nodes.get('etc/hosts2'), fs.nodes.get('etc/hosts'));
  }
});

test('tar: whiteouts become overlay whiteouts; an opaque marker marks its directory', () => {
  const tar = archive(header('usr/', { type: '5' }), header('usr/old', { size: 1 }), body('x'), header('usr/.wh.old'), header('var/.wh..wh..opq'));
  const fs = unpack(tar);
  assert.equal(fs.nodes.get('usr/old')?.dev, 'char 0:0');
  assert.equal(fs.nodes.get('var')?.xattrs?.['trusted.overlay.opaque'], 'y');
  assert.equal(fs.nodes.has('var/.wh..wh..opq'), false);
});

test('tar: entries that leave the layer or pass through a symlink are refused', () => {
  assert.throws(() => cleanEntryPath('../etc/passwd'), ImageInvalidError);
  assert.throws(() => cleanEntryPath('a/../../b'), /outside the layer/);
  assert.equal(cleanEntryPath('/abs/./path//x'), 'abs/path/x');
  assert.throws(() => unpack(archive(header('../escape', { size: 0 }))), /outside the layer/);
  assert.throws(() => unpack(archive(header('evil', { type: '2', link: '/etc' }), header('evil/passwd', { size: 1 }), body('x'))), /through the symlink "evil"/);
  assert.throws(() => unpack(archive(header('l', { type: '1', link: '../../etc/shadow' }))), /outside the layer/);
  assert.throws(() => unpack(archive(header('l', { type: '1', link: 'missing' }))), /not a file in this layer/);
});

test('tar: a truncated archive or a bad checksum is an error, not a partial layer', () => {
  const whole = archive(header('f', { size: 1000 }), body('y'.repeat(1000)));
  assert.throws(() => unpack(whole.subarray(0, 900)), /truncated/);
  const bad = Buffer.from(whole);
  bad[0] = 0x41;
  assert.throws(() => unpack(bad), /checksum/);
});

test('tar: pax path records and GNU long names', () => {
  const long = `${'d'.repeat(120)}/file`;
  // A pax record's length counts its own digits.
  let rec = '';
  for (let n = 1; n < 400; n++) {
    rec = `${n} path=${long}\n`;
    if (rec.length === n) break;
  }
  const gnu = `${'e'.repeat(130)}/other`;
  const fs = unpack(archive(
    header('PaxHeader', { type: 'x', size: rec.length }), body(rec), header('short', { size: 2 }), body('ok'),
    header('././@LongLink', { type: 'L', size: gnu.length + 1 }), body(`${gnu}\0`), header('cut', { size: 3 }), body('gnu'),
  ));
  assert.equal(fs.nodes.get(long)?.data, 'ok');
  assert.equal(fs.nodes.get(gnu)?.data, 'gnu');
  assert.equal(fs.nodes.has('short') || fs.nodes.has('cut'), false, 'the long names replace the header names');
});

test('image references: Docker names, default tag, digests', () => {
  assert.deepEqual(parseRef('busybox'), { name: 'busybox', tag: 'latest', digest: undefined });
  assert.equal(refKey(parseRef('localhost:5000/team/app:1.2')), 'localhost:5000/team/app:1.2');
  assert.throws(() => parseRef('Bad/Name'), InvalidConfigError);
  assert.throws(() => parseRef('x@sha256:12'), /digest/);
});

test('flags: sizes, ulimits, signals, mounts, env', () => {
  assert.equal(parseBytes('64m', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseBytes('1.5g', '--memory'), 1.5 * 1024 ** 3);
  assert.throws(() => parseBytes('64x', '--memory'), /invalid --memory "64x"/);
  assert.deepEqual(parseUlimit('nofile=10:20'), { name: 'nofile', soft: 10, hard: 20 });
  assert.throws(() => parseUlimit('nofile=20:10'), /above the hard limit/);
  assert.equal(parseSignal('term'), 'SIGTERM');
  assert.equal(parseSignal('9'), 'SIGKILL');
  assert.throws(() => parseSignal('SIGNOPE'), /no such signal/);
  assert.deepEqual(parseVolume('/a:/b:ro'), { type: 'bind', source: '/a', target: '/b', readOnly: true, propagation: undefined });
  assert.throws(() => parseVolume('named:/b'), /not an absolute host path/);
  assert.equal(parseTmpfs('/t:size=1m,mode=700').tmpfsSize, 1024 * 1024);
  assert.equal(parseMount('type=bind,source=/s,target=/t,readonly').readOnly, true);
  assert.throws(() => parseMount('type=volume,target=/t'), /bind or tmpfs/);
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['A=3']), ['A=3', 'B=2']);
});

const image = (config: ImageRecord['config']): ImageRecord => ({ id: 'sha256:x', layers: [], created: '', architecture: 'amd64', os: 'linux', config, size: 0 });

test('planContainer: the image config under the flags, Docker rules', () => {
  const im = image({ Entrypoint: ['/ep'], Cmd: ['default'], Env: ['PATH=/bin', 'X=img'], ExposedPorts: { '80/tcp': {} }, StopSignal: 'SIGQUIT' });
  const p = planContainer({ image: 'i', env: ['X=flag'], expose: ['53/udp'], memory: '64m' }, im, {}, 2);
  assert.deepEqual([...p.config.Entrypoint, ...p.config.Cmd], ['/ep', 'default']);
  assert.deepEqual(p.config.Env, ['PATH=/bin', 'X=flag']);
  assert.deepEqual(Object.keys(p.config.ExposedPorts).sort(), ['53/udp', '80/tcp']);
  assert.equal(p.config.StopSignal, 'SIGQUIT');
  assert.equal(p.hostConfig.MemorySwap, 128 * 1024 * 1024, 'Docker: as much swap as memory');
  const ep = planContainer({ image: 'i', entrypoint: 'sh' }, im, {}, 2);
  assert.deepEqual([...ep.config.Entrypoint, ...ep.config.Cmd], ['sh'], 'a new entrypoint drops the image Cmd');
  assert.throws(() => planContainer({ image: 'i', cpus: '3' }, im, {}, 2), /range of CPUs/);
  assert.throws(() => planContainer({ image: 'i', cpusetCpus: '0-4' }, im, {}, 2), /CPU 4 does not exist/);
  assert.throws(() => planContainer({ image: 'i', networks: ['host'], publish: ['80'] }, im, {}, 2), /do not apply/);
  assert.throws(() => planContainer({ image: 'i' }, image({}), {}, 2), /no command specified/);
  assert.throws(() => planContainer({ image: 'i', logOpts: ['max-file=3'] }, im, {}, 2), /needs max-size/);
});

test('cgroups: layout from mountinfo, and the writes for v1 and v2', () => {
  const mi = [
    '30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
    '31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
    '32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
  ].join('\n');
  assert.deepEqual(parseCgroupLayout(mi), { version: 1, mounts: { memory: '/sys/fs/cgroup/memory', cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct' } });
  assert.deepEqual(parseCgroupLayout('32 25 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw'), { version: 2, mounts: { '': '/sys/fs/cgroup' } });
  const r = { memory: 100, memorySwap: 300, cpuQuota: 50000, cpuPeriod: 100000, cpuShares: 1024, pidsLimit: 5 };
  assert.deepEqual(planCgroupWrites(1, r).map((w) => `${w.file}=${w.value}`), ['memory.limit_in_bytes=100', 'memory.memsw.limit_in_bytes=300', 'cpu.cfs_period_us=100000', 'cpu.cfs_quota_us=50000', 'cpu.shares=1024', 'pids.max=5']);
  assert.deepEqual(planCgroupWrites(2, r).map((w) => `${w.file}=${w.value}`), ['memory.max=100', 'memory.swap.max=200', 'cpu.max=50000 100000', `cpu.weight=${sharesToWeight(1024)}`, 'pids.max=5']);
  assert.equal(sharesToWeight(2), 1);
  assert.equal(sharesToWeight(262144), 10000);
});

test('capabilities and seccomp: Docker defaults, add/drop, profiles', () => {
  assert.equal(capMask(capabilitySet([], [], false)), 0xa80425fbn);
  assert.ok(capabilitySet(['cap_net_admin'], ['ALL'], false).join() === 'NET_ADMIN');
  assert.throws(() => capabilitySet(['BOGUS'], [], false), /unknown capability/);
  const def = defaultSeccomp(capabilitySet([], [], false));
  assert.ok(def.rules.some((r) => r.name === 'mount'));
  assert.ok(def.rules.some((r) => r.name === 'clone' && r.args[0]?.value === 0x10000000n), 'no new user namespaces through clone');
  assert.ok(!defaultSeccomp(capabilitySet(['SYS_ADMIN'], [], false)).rules.some((r) => r.name === 'mount'), 'CAP_SYS_ADMIN allows mount');
  const p = parseSeccompProfile(JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }, { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_PTRACE'] } }] }), [], 'p');
  assert.equal(p.defaultAction, 'errno:1');
  assert.deepEqual(p.rules.map((r) => r.name), ['read']);
  assert.throws(() => parseSeccompProfile('{"defaultAction":"NOPE"}', [], 'p'), /unknown action/);
  // Conditions on one argument are alternatives: one rule each.
  const alt = parseSeccompProfile(JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }, { index: 0, value: 8, op: 'SCMP_CMP_EQ' }] }] }), [], 'p');
  assert.deepEqual(alt.rules.map((r) => r.args.map((a) => a.value)), [[0n], [8n]]);
});

test('plans render to the line format the helper reads, escaping what must be', () => {
  const text = renderExecPlan({ join: 42, cgroups: ['/cg/a'], rlimits: [], user: { uid: 0, gid: 0, groups: [] }, cwd: '/', env: ['A=x\ty'], args: ['sh', '-c', 'echo a\nb'], noNewPrivileges: false });
  assert.equal(text, 'join\t42\ncgroup\t/cg/a\nuser\t0\t0\t-\ncwd\t/\nenv\tA=x\\ty\nargs\tsh\t-c\techo a\\nb\n');
  const steps = standardMounts({ hostNetwork: false, privileged: false, cgroupControllers: [['memory']], cgroupV2: false, tty: false });
  const full = renderContainerPlan({ ...{ rlimits: [], user: { uid: 0, gid: 0, groups: [] }, cwd: '/', env: [], args: ['true'], noNewPrivileges: false }, clone: 1, cgroupns: true, root: '/r', propagation: 0, fs: steps, masked: ['/proc/kcore'], readonly: [], rootReadOnly: false, cgroups: [], exitFile: '/e', waitAttach: false, tty: false, stdin: false });
  assert.match(full, /^mount\tdir\tproc\t\/proc\tproc\t14\t$/m);
  assert.match(full, /^mount\tdir\tcgroup\t\/sys\/fs\/cgroup\/memory\tcgroup\t15\tmemory$/m);
  assert.match(full, /^mask\t\/proc\/kcore$/m);
});

test('users: names, numbers, groups, and a missing user', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n';
  const group = 'root:x:0:\napp:x:1000:\nwheel:x:10:app,other\n';
  assert.deepEqual(resolveUser('app', passwd, group), { uid: 1000, gid: 1000, groups: [10], home: '/home/app' });
  assert.deepEqual(resolveUser('1234:wheel', passwd, group), { uid: 1234, gid: 10, groups: [], home: '/' });
  assert.deepEqual(resolveUser('', passwd, group).uid, 0);
  assert.throws(() => resolveUser('ghost', passwd, group), /unable to find user ghost/);
  assert.throws(() => resolveUser('app:nogroup', passwd, group), /unable to find group nogroup/);
});
