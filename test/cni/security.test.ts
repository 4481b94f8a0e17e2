// Attacks on the CNI path, kept in the suite: each of these once worked (or broke
// the host) against an earlier tsnet. An orchestrator's configuration and
// environment are input: names and ids that would inject firewall rules or escape
// a directory are refused, a plugin type is never a path, a prevResult never
// decides which host sysctl changes, and parallel first ADDs lose nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipReason } from '../integration/harness.js';
import { request, startServer } from '../integration/netprobe.js';
import { world, type World } from './world.js';

const skip = skipReason('nft');

const pmConf = (name: string, prevResult: unknown, maps: unknown[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.1.0', name, type: 'tsnet-portmap', snat: true, runtimeConfig: { portMappings: maps }, prevResult, ...extra });
const firewall = (w: World) => w.inHost('iptables-save').stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '') + w.inHost('nft', 'list', 'ruleset').stdout;

test('CNI input: injection through names and ids, paths as plugin types, wrong shapes: refused with the spec\'s codes, nothing changed', { skip }, () => {
  const w = world();
  try {
    const c = w.container();
    const marker = join(w.dir, 'executed');
    writeFileSync(join(w.dir, 'x.sh'), `#!/bin/sh\ntouch ${marker}\necho '{"cniVersion":"1.1.0","ips":[{"address":"10.9.9.9/24"}]}'\n`, { mode: 0o755 });
    const before = firewall(w);
    const evil = 'net1" -j ACCEPT\nCOMMIT\n*filter\n-I INPUT -j ACCEPT\nCOMMIT\n#';
    const cases: Array<[string, string, Record<string, string>, string, number]> = [
      ['a network name with a quote and newlines', 'tsnet-bridge', {}, w.conf({ name: evil }), 7],
      ['a network name with a colon', 'tsnet-bridge', {}, w.conf({ name: 'a:b' }), 7],
      ['a network name with ../', 'tsnet-bridge', {}, w.conf({ name: '../../etc' }), 7],
      ['portmap with an injecting name', 'tsnet-portmap', {}, pmConf(evil, { cniVersion: '1.1.0', ips: [{ address: '10.88.0.2/16' }] }, [{ hostPort: 8080, containerPort: 80 }], { backend: 'nftables' }), 7],
      ['a container id with a newline', 'tsnet-bridge', { CNI_CONTAINERID: 'c1\n-j ACCEPT' }, w.conf(), 4],
      ['a container id with a space', 'tsnet-bridge', { CNI_CONTAINERID: 'c1 x' }, w.conf(), 4],
      ['an ifname with a slash', 'tsnet-bridge', { CNI_IFNAME: 'a/b' }, w.conf(), 4],
      ['an ifname of ..', 'tsnet-bridge', { CNI_IFNAME: '..' }, w.conf(), 4],
      ['CNI_COMMAND=toString', 'tsnet-bridge', { CNI_COMMAND: 'toString' }, w.conf(), 4],
      ['CNI_COMMAND=__proto__', 'tsnet-bridge', { CNI_COMMAND: '__proto__' }, w.conf(), 4],
      ['an ipam type that is a path', 'tsnet-bridge', {}, w.conf({ ipam: { type: `../../../../..${join(w.dir, 'x.sh')}` } }), 7],
      ['an ipam type that is an absolute path', 'tsnet-bridge', {}, w.conf({ ipam: { type: join(w.dir, 'x.sh') } }), 7],
      ['portMappings: [null]', 'tsnet-portmap', {}, pmConf('net1', { cniVersion: '1.1.0', ips: [] }, [null]), 7],
      ['portMappings: ["x"]', 'tsnet-portmap', {}, pmConf('net1', { cniVersion: '1.1.0', ips: [] }, ['x']), 7],
      ['prevResult.ips: "x"', 'tsnet-portmap', {}, pmConf('net1', { cniVersion: '1.1.0', ips: 'x' }, [{ hostPort: 8080, containerPort: 80 }]), 7],
      ['prevResult: a string', 'tsnet-portmap', {}, pmConf('net1', 'x', [{ hostPort: 8080, containerPort: 80 }]), 7],
      ['prevResult address not a CIDR', 'tsnet-portmap', {}, pmConf('net1', { cniVersion: '1.1.0', ips: [{ address: 'x' }] }, [{ hostPort: 8080, containerPort: 80 }]), 7],
      ['overlapping range sets', 'tsnet-bridge', {}, w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/16' }], [{ subnet: '10.88.1.0/24' }]], dataDir: join(w.dir, 'ipam') } }), 7],
      ['overlapping ranges in one set', 'tsnet-bridge', {}, w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/24' }, { subnet: '10.88.0.128/25' }]], dataDir: join(w.dir, 'ipam') } }), 7],
      ['a range set mixing families', 'tsnet-bridge', {}, w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/24' }, { subnet: 'fd00::/64' }]], dataDir: join(w.dir, 'ipam') } }), 7],
      ['GC with valid-attachments not a list', 'tsnet-bridge', { CNI_COMMAND: 'GC' }, w.conf({ 'cni.dev/valid-attachments': 'x' }), 7],
    ];
    for (const [what, plugin, env, stdin, code] of cases) {
      const r = w.call(env.CNI_COMMAND ?? 'ADD', env.CNI_CONTAINERID ?? 'c1', c, stdin, plugin, env);
      assert.equal(r.code, 1, `${what}: fails (${r.raw})`);
      assert.equal(r.out?.code, code, `${what}: code ${code} (${r.raw})`);
    }
    assert.ok(!existsSync(marker), 'the file named as ipam type was never executed');
    assert.equal(firewall(w), before, 'no rule was added anywhere');
    assert.deepEqual(w.ipamFiles(), []);
    assert.ok(!existsSync(join(w.dir, 'etc')), 'nothing was written outside the data directory');
  } finally {
    w.done();
  }
});

test('tsnet-portmap: 127.0.0.1 access opens no path to the host\'s loopback services (CVE-2020-8558); route_localnet comes from the kernel and is put back', { skip }, async () => {
  for (const backend of ['iptables', 'nftables']) {
    const w = world();
    try {
      const c1 = w.container();
      const br = w.call('ADD', 'c1', c1, w.conf());
      assert.equal(br.code, 0, br.raw);
      // A lying prevResult: its host interfaces are "all" and "lo".
      const prev = { ...br.out, interfaces: [{ name: 'all' }, { name: 'lo' }, ...br.out.interfaces] };
      prev.ips = prev.ips.map((ip: { interface: number }) => ({ ...ip, interface: ip.interface + 2 }));
      const add = w.call('ADD', 'c1', c1, pmConf('net1', prev, [{ hostPort: 8090, containerPort: 80 }], { backend }), 'tsnet-portmap');
      assert.equal(add.code, 0, add.raw);
      const sysctl = (k: string) => w.inHost('cat', `/proc/sys/net/ipv4/conf/${k}/route_localnet`).stdout.trim();
      assert.equal(sysctl('cni0'), '1', `${backend}: route_localnet on the interface the kernel routes the container through`);
      assert.equal(sysctl('all'), '0', `${backend}: never on "all" because prevResult said so`);
      const secret = await startServer(`/run/netns/${w.host}`, 'tcp', [9999]); // listens on every host address, 127.0.0.1 included
      const web = await startServer(`/run/netns/${c1}`, 'tcp', [80]);
      try {
        assert.equal(request(`/run/netns/${w.host}`, 'tcp', '127.0.0.1', 8090), '10.88.0.1 80', `${backend}: the published port answers on 127.0.0.1`);
        // The container sends to 127.0.0.1 through its gateway (what a raw SYN does).
        const inC = (...a: string[]) => spawnSync('ip', ['netns', 'exec', c1, ...a], { encoding: 'utf8' });
        inC('sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1');
        inC('ip', 'route', 'del', 'local', '127.0.0.1', 'dev', 'lo', 'table', 'local');
        inC('ip', 'route', 'add', '127.0.0.1/32', 'via', '10.88.0.1', 'dev', 'eth0');
        assert.match(inC('ip', 'route', 'get', '127.0.0.1').stdout, /via 10\.88\.0\.1 dev eth0/);
        assert.equal(request(`/run/netns/${c1}`, 'tcp', '127.0.0.1', 9999), 'timeout', `${backend}: the host's 127.0.0.1 is not reachable from the container`);
      } finally {
        secret.kill();
        web.kill();
      }
      assert.equal(w.call('DEL', 'c1', c1, pmConf('net1', prev, [{ hostPort: 8090, containerPort: 80 }], { backend }), 'tsnet-portmap').code, 0);
      assert.equal(sysctl('cni0'), '0', `${backend}: route_localnet back as it was after the last DEL`);
      assert.doesNotMatch(firewall(w), /TSNET-CNI-LOCALNET|tsnet_cni|TSNET-CNI-HOSTPORT/, `${backend}: guard and chains gone with the last mapping`);
    } finally {
      w.done();
    }
  }
});

test('tsnet-bridge + portmap: long network names and container ids; GC of one network leaves another; IPAM never writes through a symlink', { skip }, () => {
  const w = world();
  try {
    const c1 = w.container();
    const longNet = `n${'x'.repeat(249)}`;
    const longId = `c${'0123456789'.repeat(100)}`;
    const conf = w.conf({ name: longNet });
    const br = w.call('ADD', longId, c1, conf);
    assert.equal(br.code, 0, br.raw);
    const pm = pmConf(longNet, br.out, [{ hostPort: 8091, containerPort: 80 }]);
    assert.equal(w.call('ADD', longId, c1, pm, 'tsnet-portmap').code, 0);
    assert.match(w.inHost('iptables-save', '-t', 'nat').stdout, /--dport 8091/);
    assert.equal(w.call('DEL', longId, c1, pm, 'tsnet-portmap').code, 0);
    assert.equal(w.call('DEL', longId, c1, conf).code, 0);
    assert.doesNotMatch(w.inHost('iptables-save', '-t', 'nat').stdout, /8091|10\.88\.0\.2/, 'DEL removed the DNAT and masquerade rules');
    assert.doesNotMatch(w.inHost('ip', '-o', 'link').stdout, /tsc[0-9a-f]{12}/);

    // Networks "a" and "a.b" on one bridge: GC of "a" keeps "a.b"'s veth and rules.
    const ca = w.container();
    const cab = w.container();
    const confA = w.conf({ name: 'a' });
    const confAB = w.conf({ name: 'a.b', ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.89.0.0/16' }]], dataDir: join(w.dir, 'ipam2') } });
    assert.equal(w.call('ADD', 'x1', ca, confA).code, 0);
    const ab = w.call('ADD', 'x2', cab, confAB);
    assert.equal(ab.code, 0, ab.raw);
    assert.equal(w.call('GC', '', undefined, JSON.stringify({ ...JSON.parse(confA), 'cni.dev/valid-attachments': [] })).code, 0);
    assert.equal(spawnSync('ip', ['-n', cab, 'link', 'show', 'eth0']).status, 0, 'a.b keeps its interface');
    assert.match(w.inHost('iptables-save', '-t', 'nat').stdout, new RegExp(`-s ${ab.out.ips[0].address.split('/')[0]}/32`), 'and its masquerade rule');
    assert.equal(spawnSync('ip', ['-n', ca, 'link', 'show', 'eth0']).status, 1, 'a lost its attachment');

    // A symlink planted as last_reserved_ip: replaced, its target untouched.
    const data = join(w.dir, 'ipam3', 'net1');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(w.dir, 'target'), 'precious');
    symlinkSync(join(w.dir, 'target'), join(data, 'last_reserved_ip.0'));
    const c3 = w.container();
    const r = w.call('ADD', 'x3', c3, w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.66.0.0/24' }]], dataDir: join(w.dir, 'ipam3') } }));
    assert.equal(r.code, 0, r.raw);
    assert.equal(readFileSync(join(w.dir, 'target'), 'utf8'), 'precious');
    assert.equal(readFileSync(join(data, 'last_reserved_ip.0'), 'utf8'), '10.66.0.2');
    // A symlinked network directory is refused.
    mkdirSync(join(w.dir, 'elsewhere'));
    mkdirSync(join(w.dir, 'ipam4'));
    symlinkSync(join(w.dir, 'elsewhere'), join(w.dir, 'ipam4', 'net1'));
    const s = w.call('ADD', 'x4', w.container(), w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.67.0.0/24' }]], dataDir: join(w.dir, 'ipam4') } }));
    assert.equal(s.out?.code, 7, s.raw);
    assert.deepEqual(readdirSync(join(w.dir, 'elsewhere')), []);
  } finally {
    w.done();
  }
});

for (const backend of ['iptables', 'nftables'] as const) {
  test(`200 parallel first bridge+portmap ADDs (portmap ${backend}) on a fresh host lose no rule; DEL of all leaves nothing`, { skip, timeout: 600_000 }, async () => {
    const w = world();
    const n = 200;
    try {
      // Warm the server first (the case with the most concurrency: one process, many calls at once).
      assert.equal(w.call('VERSION', '', undefined, '').code, 0);
      const listening = () => existsSync(join(w.run, 'cni')) && readdirSync(join(w.run, 'cni')).some((f) => f.endsWith('.sock'));
      for (let i = 0; i < 100 && !listening(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(listening(), 'the warm server listens');
      const ns = Array.from({ length: n }, () => w.container());
      const conf = w.conf({ ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.80.0.0/16' }]], dataDir: join(w.dir, 'ipam') } });
      const chain = async (i: number) => {
        const br = await w.callAsync('ADD', `p${i}`, ns[i], conf);
        if (br.code !== 0) return br;
        return w.callAsync('ADD', `p${i}`, ns[i], pmConf('net1', br.out, [{ hostPort: 20000 + i, containerPort: 80 }], { backend }), 'tsnet-portmap');
      };
      const results = await Promise.all(ns.map((_, i) => chain(i)));
      results.forEach((r, i) => assert.equal(r.code, 0, `chain ${i}: ${r.raw}`));
      const nat = w.inHost('iptables-save', '-t', 'nat').stdout;
      const count = (re: RegExp) => (nat.match(re) ?? []).length;
      assert.equal(count(/^-A TSNET-CNI-MASQ .*MASQUERADE$/gm), n, 'one masquerade rule per pod');
      assert.equal(count(/^-A POSTROUTING -j TSNET-CNI-MASQ$/gm), 1, 'one hook');
      if (backend === 'iptables') {
        assert.equal(count(/^-A TSNET-CNI-HOSTPORT .*DNAT/gm), n, 'one DNAT rule per pod');
        assert.equal(count(/^-A PREROUTING .*TSNET-CNI-HOSTPORT$/gm), 1);
        assert.equal(count(/^-A OUTPUT .*TSNET-CNI-HOSTPORT$/gm), 1);
        assert.equal(count(/^-A TSNET-CNI-HOSTPORT-SNAT /gm), 2 * n, 'hairpin and 127.0.0.1 masquerade per pod');
        assert.equal((w.inHost('iptables-save', '-t', 'raw').stdout.match(/^-A TSNET-CNI-LOCALNET /gm) ?? []).length, 1, 'one localnet guard');
      } else {
        const t = w.inHost('nft', 'list', 'table', 'inet', 'tsnet_cni').stdout;
        assert.equal((t.match(/ dnat ip to /g) ?? []).length, 2 * n, 'DNAT from prerouting and output per pod');
        assert.equal((t.match(/ masquerade comment/g) ?? []).length, 2 * n);
        assert.equal((t.match(/iifname != "lo" drop/g) ?? []).length, 1, 'one localnet guard');
      }
      const dels = await Promise.all(
        ns.map(async (_, i) => {
          const prev = results[i]!.out;
          const pm = await w.callAsync('DEL', `p${i}`, ns[i], pmConf('net1', prev, [{ hostPort: 20000 + i, containerPort: 80 }], { backend }), 'tsnet-portmap');
          return pm.code === 0 ? w.callAsync('DEL', `p${i}`, ns[i], conf) : pm;
        }),
      );
      dels.forEach((r, i) => assert.equal(r.code, 0, `DEL ${i}: ${r.raw}`));
      assert.doesNotMatch(firewall(w), /TSNET-CNI|tsnet_cni|tsnet-pm|tsnet-cni/, 'every rule, chain and hook gone');
      assert.equal(w.inHost('cat', '/proc/sys/net/ipv4/conf/cni0/route_localnet').stdout.trim(), '0');
      assert.deepEqual(readdirSync(join(w.dir, 'ipam', 'net1')).filter((f) => /^\d/.test(f)), []);
    } finally {
      w.done();
    }
  });
}

test('30 parallel first ADDs without the warm server (a Node process each) lose no rule', { skip, timeout: 300_000 }, async () => {
  const w = world();
  const n = 30;
  try {
    const ns = Array.from({ length: n }, () => w.container());
    const results = await Promise.all(ns.map((x, i) => w.callAsync('ADD', `d${i}`, x, w.conf(), 'tsnet-bridge', { TSNET_CNI_SERVER: '0' })));
    results.forEach((r, i) => assert.equal(r.code, 0, `ADD ${i}: ${r.raw}`));
    const nat = w.inHost('iptables-save', '-t', 'nat').stdout;
    assert.equal((nat.match(/^-A TSNET-CNI-MASQ /gm) ?? []).length, n);
    assert.equal((nat.match(/^-A POSTROUTING -j TSNET-CNI-MASQ$/gm) ?? []).length, 1);
  } finally {
    w.done();
  }
});
