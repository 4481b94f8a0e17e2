// Port mapping on the real kernel (iptables backend), in throwaway namespaces:
// an "outside" namespace plays a remote client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { pollUntil, processGone, runSync, skipReason, withHost, type TestHost } from './harness.js';
import { request, startServer } from './netprobe.js';

const skip = skipReason('ping', 'nft');
const sbxPath = (h: TestHost, name: string) => join(h.runDir, 'netns', name);

async function settleIpv6(namespaces: string[]): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const busy = namespaces.some((ns) => /tentative/.test(runSync(['nsenter', `--net=${ns}`, '--', 'ip', '-6', 'addr']).stdout));
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The published-port part of the firewall as text: DNAT rules or map elements. */
function natRules(h: TestHost, fw: string): string {
  if (fw === 'iptables') return h.sh('iptables-save', '-t', 'nat').stdout.split('\n').filter((l) => l.includes('DNAT --to')).join('\n');
  return h.sh('nft', 'list', 'table', 'inet', 'tsnet').stdout.split('\n').filter((l) => / : /.test(l)).join('\n');
}

for (const fw of ['iptables', 'nftables']) {
  test(`${fw}: published TCP and UDP ports, ranges, localhost and hairpin; source IP kept; direct access dropped`, { skip }, async () =>
    withHost(async (h) => {
      const outside = h.addOutside();
      h.ok(['sandbox', 'create', '-p', '8080:80', '-p', '9090:90/udp', '-p', '127.0.0.1:8081:80', '-p', '8000-8002:7000-7002', 'web']);
      h.ok(['sandbox', 'create', 'nb']);
      const servers = [
        await startServer(sbxPath(h, 'web'), 'tcp', [80, 7000, 7001, 7002]),
        await startServer(sbxPath(h, 'web'), 'udp', [90]),
      ];
      try {
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8080), '198.51.100.2 80', 'TCP from outside; the server sees the client address');
        assert.equal(request(outside, 'udp', '198.51.100.1', 9090), '198.51.100.2 90', 'UDP from outside');
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8001), '198.51.100.2 7001', 'a range keeps port offsets');
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8080), '172.17.0.1 80', 'localhost on a port published on every address');
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8081), '172.17.0.1 80', 'localhost on a port published on 127.0.0.1');
        assert.match(request(outside, 'tcp', '198.51.100.1', 8081), /error|timeout/, 'a 127.0.0.1 port is not published on other addresses');
        assert.equal(request(sbxPath(h, 'web'), 'tcp', '198.51.100.1', 8080), '172.17.0.1 80', 'hairpin: the container reaches its own published port');
        assert.equal(request(sbxPath(h, 'nb'), 'tcp', '198.51.100.1', 8080), '172.17.0.1 80', 'a neighbour reaches it through the host address');
        h.inNs(outside, 'ip', 'route', 'add', '172.17.0.0/16', 'via', '198.51.100.1');
        assert.equal(request(outside, 'tcp', '172.17.0.2', 80), 'timeout', 'the container address itself is not reachable from outside');
        assert.deepEqual(h.ok(['port', 'web']).split('\n'), [
          '80/tcp -> 0.0.0.0:8080', '80/tcp -> [::]:8080', '80/tcp -> 127.0.0.1:8081', '90/udp -> 0.0.0.0:9090', '90/udp -> [::]:9090',
          '7000/tcp -> 0.0.0.0:8000', '7000/tcp -> [::]:8000', '7001/tcp -> 0.0.0.0:8001', '7001/tcp -> [::]:8001', '7002/tcp -> 0.0.0.0:8002', '7002/tcp -> [::]:8002',
        ]);
        // What we render is exactly what the kernel prints back: with the fast-path mark
      // gone, a full check finds nothing to change.
      h.sh('rm', '-f', join(h.runDir, 'firewall.mark'));
      const dbg = h.tsnet(['-l', 'debug', 'system', 'reconcile']);
      assert.equal(dbg.code, 0);
      assert.match(dbg.stderr, fw === 'iptables' ? /"iptables-save"/ : /"nft","list"/, 'a full check ran');
      assert.doesNotMatch(dbg.stderr, /"iptables-restore"|"nft","-f"/, 'and applied nothing');
      const ports = h.inspect('network', 'bridge').Containers;
        const web = Object.values(ports).find((c: any) => c.Name === 'web') as any;
        assert.deepEqual(web.Ports['90/udp'], [{ HostIp: '0.0.0.0', HostPort: '9090' }, { HostIp: '::', HostPort: '9090' }]);
      } finally {
        for (const s of servers) s.kill();
      }
    }, { firewall: fw }));

  test(`${fw}: ports taken by another program or another sandbox are refused with the port named`, { skip }, async () =>
    withHost(async (h) => {
      const holder = spawn('nsenter', [`--net=${h.nsPath}`, '--', process.execPath, '-e', "require('net').createServer().listen(5555, () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'ignore'] });
      try {
        await new Promise((r) => holder.stdout.once('data', r));
        h.ok(['sandbox', 'create', 'a']);
        h.ok(['network', 'disconnect', 'bridge', 'a']);
        let r = h.tsnet(['network', 'connect', '-p', '5555:80', 'bridge', 'a']);
        assert.equal(r.code, 6);
        assert.match(r.stderr, /port 0\.0\.0\.0:5555\/tcp is already in use by another program/);
        h.ok(['network', 'connect', '-p', '6000:80', 'bridge', 'a']);
        h.ok(['sandbox', 'create', 'b']);
        h.ok(['network', 'disconnect', 'bridge', 'b']);
        r = h.tsnet(['network', 'connect', '-p', '6000:81', 'bridge', 'b']);
        assert.equal(r.code, 6);
        assert.match(r.stderr, /0\.0\.0\.0:6000\/tcp is already published by sandbox a/);
        r = h.tsnet(['network', 'connect', '-p', '127.0.0.1:6000:81', 'bridge', 'b']);
        assert.equal(r.code, 6, '0.0.0.0 covers 127.0.0.1');
        h.ok(['network', 'connect', '-p', '6000:81/udp', 'bridge', 'b']);
        for (const bad of ['0:80', '70000:80', '80-70:80', '8000-8001:80-82', 'x:80', '1.2.3.4.5:80:80', '::1:80:80', '80/icmp']) {
          r = h.tsnet(['sandbox', 'create', '-p', bad, 'badport']);
          assert.equal(r.code, 2, `-p ${bad}: ${r.stderr}`);
        }
        assert.notEqual(h.tsnet(['sandbox', 'inspect', 'badport']).code, 0, 'nothing was created');
        h.ok(['network', 'create', '--internal', 'int']);
        r = h.tsnet(['sandbox', 'create', '--network', 'int', '-p', '80', 'i1']);
        assert.match(r.stderr, /internal/);
      } finally {
        holder.kill();
      }
    }, { firewall: fw }));

  test(`${fw}: -P publishes --expose ports on ephemeral host ports; disconnect removes exactly that endpoint's rules; reconcile restores flushed rules`, { skip }, async () =>
    withHost(async (h) => {
      h.sh('sysctl', '-w', 'net.ipv4.ip_local_port_range=40000 40099');
      h.ok(['sandbox', 'create', '-P', '--expose', '80', '--expose', '53/udp', 'auto']);
      h.ok(['sandbox', 'create', '-p', '7070:80', 'keep']);
      const lines = h.ok(['port', 'auto']).split('\n');
      assert.equal(lines.length, 4, 'two ports, each on 0.0.0.0 and [::] (the proxy serves IPv6)');
      for (const l of lines) {
        const port = Number(l.split(':').pop());
        assert.ok(port >= 40000 && port <= 40099, l);
      }
      const server = await startServer(sbxPath(h, 'auto'), 'tcp', [80]);
      try {
        const hp = Number(lines.find((l) => l.startsWith('80/tcp'))!.split(':').pop());
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', hp), '172.17.0.1 80');
        // Flush our DNAT rules by hand; the next command restores them.
        if (fw === 'iptables') h.sh('iptables', '-t', 'nat', '-F', 'TSNET-DNAT');
        else h.sh('nft', 'flush', 'map', 'inet', 'tsnet', 'dnat4any');
        assert.ok(!natRules(h, fw).includes(`:${hp} `) && !natRules(h, fw).includes(`. ${hp} :`), 'rules gone');
        // (the userland proxy still answers meanwhile: it holds every published port)
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', hp), '172.17.0.1 80');
        h.ok(['sandbox', 'create', '--network', 'none', 'trigger']);
        assert.ok(natRules(h, fw).includes(`${hp}`), 'restored by reconcile');
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', hp), '172.17.0.1 80');
      } finally {
        server.kill();
      }
      const ipAuto = h.inspect('sandbox', 'auto').Networks.bridge.IPAddress;
      const ipKeep = h.inspect('sandbox', 'keep').Networks.bridge.IPAddress;
      assert.ok(natRules(h, fw).includes(`${ipAuto}`));
      h.ok(['network', 'disconnect', 'bridge', 'auto']);
      const nat = natRules(h, fw);
      assert.ok(!nat.includes(ipAuto), 'no rule of the disconnected endpoint is left');
      assert.ok(nat.includes(ipKeep), 'the other endpoint keeps its rule');
      h.ok(['sandbox', 'rm', 'keep']);
      assert.ok(!natRules(h, fw).includes(ipKeep));
    }, { firewall: fw }));

  test(`${fw}: an IPv6 host address is published to the container's IPv6 address`, { skip }, async () =>
    withHost(async (h) => {
      const outside = h.addOutside();
      h.sh('ip', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'uplink0', 'nodad');
      h.inNs(outside, 'ip', 'addr', 'add', '2001:db8:1::2/64', 'dev', 'eth0', 'nodad');
      h.ok(['network', 'create', '--ipv6', '--subnet', '10.60.0.0/24', '--subnet', 'fd00:60::/64', 'v6']);
      h.ok(['sandbox', 'create', '--network', 'v6', '-p', '[2001:db8:1::1]:8086:80', '-p', '8087:80', 'web6']);
      const server = await startServer(sbxPath(h, 'web6'), 'tcp', [80]);
      try {
        // Fresh veths spend their first second or two on IPv6 duplicate address detection of
        // their link-local addresses, and neighbour discovery waits for it: let it finish.
        await settleIpv6([h.nsPath, outside, sbxPath(h, 'web6')]);
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8086), '2001:db8:1::2 80', 'IPv6 NAT path keeps the client address');
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8087), '2001:db8:1::2 80', 'a port on every address answers on IPv6 too');
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8087), '198.51.100.2 80');
        assert.match(h.ok(['port', 'web6']), /80\/tcp -> \[2001:db8:1::1\]:8086/);
      } finally {
        server.kill();
      }
    }, { firewall: fw }));
}

for (const fw of ['iptables', 'nftables']) {
  test(`${fw}: IPv6 clients of an IPv4-only endpoint reach it through the proxy, past the operator's hook; -p [::1]:P and [v6]:P accepted`, { skip }, async () =>
    withHost(async (h) => {
      const outside = h.addOutside();
      h.sh('ip', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'uplink0', 'nodad');
      h.inNs(outside, 'ip', 'addr', 'add', '2001:db8:1::2/64', 'dev', 'eth0', 'nodad');
      h.ok(['sandbox', 'create', '-p', '8096:80', '-p', '[::1]:8097:80', '-p', '[2001:db8:1::1]:8098:80', 'web']);
      assert.deepEqual(h.ok(['port', 'web']).split('\n'), ['80/tcp -> 0.0.0.0:8096', '80/tcp -> [::]:8096', '80/tcp -> [::1]:8097', '80/tcp -> [2001:db8:1::1]:8098']);
      const server = await startServer(sbxPath(h, 'web'), 'tcp', [80]);
      try {
        await settleIpv6([h.nsPath, outside]);
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8096), '172.17.0.1 80', 'IPv6 client, IPv4 container: through the proxy');
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8098), '172.17.0.1 80', 'an IPv6 host address on an IPv4-only network');
        assert.equal(request(h.nsPath, 'tcp', '::1', 8097), '172.17.0.1 80', '[::1]');
        // The operator blocks that client in the chain tsnet leaves to them: it holds for proxied ports too.
        if (fw === 'iptables') h.sh('ip6tables', '-I', 'TSNET-USER', '-s', '2001:db8:1::2', '-j', 'DROP');
        else h.sh('nft', 'add', 'rule', 'inet', 'tsnet', 'user', 'ip6', 'saddr', '2001:db8:1::2', 'drop');
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8096), 'timeout', 'the operator\'s rule sees proxied traffic');
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8098), 'timeout');
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8096), '198.51.100.2 80', 'IPv4 is unaffected');
        h.ok(['sandbox', 'create', '--network', 'none', 'trigger']);
        assert.equal(request(outside, 'tcp', '2001:db8:1::1', 8096), 'timeout', 'reconcile keeps the operator\'s rule');
      } finally {
        server.kill();
      }
      h.ok(['sandbox', 'rm', 'web', 'trigger']);
      if (fw === 'iptables') assert.doesNotMatch(h.sh('ip6tables-save').stdout, /TSNET-PROXY-INPUT/, 'the INPUT hook goes with the last proxied port');
    }, { firewall: fw }));
}

test('-o com.docker.network.bridge.host_binding_ipv4: validated, and the default host address of the network\'s ports', { skip }, async () =>
  withHost(async (h) => {
    const outside = h.addOutside();
    const bad = h.tsnet(['network', 'create', '-o', 'com.docker.network.bridge.host_binding_ipv4=garbage', 'x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /host_binding_ipv4="garbage" is not an IP address/);
    h.ok(['network', 'create', '-o', 'com.docker.network.bridge.host_binding_ipv4=127.0.0.1', 'local']);
    h.ok(['sandbox', 'create', '--network', 'local', '-p', '8099:80', '-p', '198.51.100.1:8100:80', 'web']);
    assert.deepEqual(h.ok(['port', 'web']).split('\n'), ['80/tcp -> 127.0.0.1:8099', '80/tcp -> 198.51.100.1:8100']);
    const server = await startServer(sbxPath(h, 'web'), 'tcp', [80]);
    try {
      assert.match(request(h.nsPath, 'tcp', '127.0.0.1', 8099), / 80$/, 'published on 127.0.0.1');
      assert.match(request(outside, 'tcp', '198.51.100.1', 8099), /error|timeout/, 'and only there');
      assert.equal(request(outside, 'tcp', '198.51.100.1', 8100), '198.51.100.2 80', 'an explicit host address still wins');
    } finally {
      server.kill();
    }
  }));

test('userland proxy: holds published ports, serves [::1] and --firewall none, comes back after a kill, leaves with the last port', { skip }, async () =>
  withHost(async (h) => {
    h.ok(['network', 'create', '--ipv6', '--subnet', '10.70.0.0/24', '--subnet', 'fd00:70::/64', 'v6']);
    h.ok(['sandbox', 'create', '--network', 'v6', '-p', '8090:80', '-p', '5300:53/udp', 'web']);
    const servers = [await startServer(sbxPath(h, 'web'), 'tcp', [80]), await startServer(sbxPath(h, 'web'), 'udp', [53])];
    try {
      const pid = h.proxyPid();
      assert.ok(pid, 'a proxy runs');
      // The published port is held: no other program can bind it.
      const grab = h.sh(process.execPath, '-e', "require('net').createServer().listen(8090, '0.0.0.0').on('error', (e) => { console.log(e.code); process.exit(0) }).on('listening', () => { console.log('bound'); process.exit(0) })");
      assert.equal(grab.stdout.trim(), 'EADDRINUSE');
      await settleIpv6([h.nsPath, sbxPath(h, 'web')]);
      assert.equal(request(h.nsPath, 'tcp', '::1', 8090), 'fd00:70::1 80', '[::1] through the proxy');
      assert.equal(request(h.nsPath, 'udp', '::1', 5300), 'fd00:70::1 53', 'UDP [::1] through the proxy');
      // Killed, it is started again by its keeper and takes its ports back, before any tsnet command.
      h.sh('kill', '-9', String(pid));
      let again: number | undefined;
      for (let i = 0; i < 60 && !(again && again !== pid && request(h.nsPath, 'tcp', '::1', 8090) === 'fd00:70::1 80'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        again = h.proxyPid();
      }
      assert.ok(again && again !== pid, 'a new proxy, with no command run');
      assert.equal(request(h.nsPath, 'tcp', '::1', 8090), 'fd00:70::1 80', 'serving its ports again');
      assert.equal(h.sh(process.execPath, '-e', "require('net').createServer().listen(8090, '::').on('error', (e) => { console.log(e.code); process.exit(0) }).on('listening', () => { console.log('bound'); process.exit(0) })").stdout.trim(), 'EADDRINUSE', 'and holding them');
      const keeper = Number(readFileSync(join(h.runDir, 'proxy.keeper.pid'), 'utf8'));
      h.ok(['sandbox', 'rm', 'web']);
      await pollUntil(() => processGone(again!) && processGone(keeper), 3000);
      // Exited (a zombie counts), socket removed.
      assert.ok(processGone(again!), 'the proxy exits with its last binding');
      assert.ok(processGone(keeper), 'and its keeper with it');
      assert.equal(h.sh('test', '-e', join(h.runDir, 'proxy.sock')).code, 1);
      assert.equal(h.sh('test', '-e', join(h.runDir, 'proxy.sock.bindings.json')).code, 1);
    } finally {
      for (const x of servers) x.kill();
    }
  }));

test('userland proxy: a port another program took while the proxy was down is reported loudly, then taken back', { skip, timeout: 60_000 }, async () =>
  withHost(async (h) => {
    h.ok(['sandbox', 'create', '-p', '8092:80', 'web']);
    const server = await startServer(sbxPath(h, 'web'), 'tcp', [80]);
    const keeper = Number(readFileSync(join(h.runDir, 'proxy.keeper.pid'), 'utf8'));
    // Keeper and proxy both gone; another program takes [::]:8092 meanwhile.
    const proxy = h.proxyPid()!;
    h.sh('kill', '-9', String(keeper), String(proxy));
    assert.ok(await pollUntil(() => processGone(keeper) && processGone(proxy)), 'keeper and proxy are gone');
    const squatter = spawn('nsenter', [`--net=${h.nsPath}`, '--', process.execPath, '-e', "require('net').createServer().listen({ port: 8092, host: '::', ipv6Only: true }, () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const up = await new Promise<string>((resolve) => {
        squatter.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
        squatter.once('exit', (code) => resolve(`exited ${code}`));
      });
      assert.equal(up, 'up', 'the squatter holds the port');
      // A read-only command notices, and starts it again.
      h.ok(['sandbox', 'ls']);
      let port = h.tsnet(['port', 'web']);
      for (let i = 0; i < 50 && !/Warning/.test(port.stderr); i++) {
        await new Promise((r) => setTimeout(r, 100));
        port = h.tsnet(['port', 'web']);
      }
      assert.equal(port.code, 0);
      assert.equal(port.stdout, '80/tcp -> 0.0.0.0:8092\n80/tcp -> [::]:8092\n', 'stdout stays docker port\'s');
      assert.match(port.stderr, /^Warning: published port \[::\]:8092\/tcp of sandbox web is not held by the userland proxy: another program has it/m);
      assert.deepEqual(h.inspect('sandbox', 'web').Networks.bridge.LostPorts.length, 1, 'inspect shows it');
      const other = h.tsnet(['network', 'create', 'unrelated']);
      assert.equal(other.code, 0, 'an unrelated change still works');
      assert.match(other.stderr, /Warning: published port \[::\]:8092\/tcp of sandbox web is not held/, 'and says so');
      assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8092), '172.17.0.1 80', 'IPv4 keeps working through NAT');
    } finally {
      squatter.kill('SIGKILL');
    }
    try {
      // Released: the proxy takes it back by itself within a few seconds.
      let clear = false;
      for (let i = 0; i < 80 && !clear; i++) {
        await new Promise((r) => setTimeout(r, 100));
        clear = h.tsnet(['port', 'web']).stderr === '' && request(h.nsPath, 'tcp', '::1', 8092) === '172.17.0.1 80';
      }
      assert.ok(clear, 'held and served again, no warning');
      assert.equal(h.inspect('sandbox', 'web').Networks.bridge.LostPorts, undefined);
    } finally {
      server.kill();
    }
  }));

for (const fw of ['iptables', 'nftables']) {
  test(`${fw}: 127.0.0.1 is the proxy's (route_localnet stays off); without the proxy it is NAT's, behind the loopback guard`, { skip }, async () =>
    withHost(async (h) => {
      const outside = h.addOutside();
      const localnet = () => h.sh('cat', '/proc/sys/net/ipv4/conf/tsnet0/route_localnet').stdout.trim();
      h.ok(['sandbox', 'create', '-p', '8110:80', 'web']);
      const server = await startServer(sbxPath(h, 'web'), 'tcp', [80]);
      try {
        assert.equal(localnet(), '0', 'no route_localnet with the proxy');
        assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8110), '172.17.0.1 80', '127.0.0.1 through the proxy');
        assert.equal(request(h.nsPath, 'tcp', '172.17.0.1', 8110), '172.17.0.1 80', 'the gateway address, by NAT without SNAT');
        h.ok(['sandbox', 'rm', 'web']);
        const off = { TSNET_USERLAND_PROXY: 'false' };
        const r = h.tsnet(['sandbox', 'create', '-p', '8111:80', 'web2'], off);
        assert.equal(r.code, 0, r.stderr);
        const server2 = await startServer(sbxPath(h, 'web2'), 'tcp', [80]);
        try {
          assert.equal(localnet(), '1', 'NAT needs route_localnet');
          assert.equal(h.proxyPid(), undefined, 'no proxy runs');
          assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8111), '172.17.0.1 80', '127.0.0.1 through NAT');
          assert.equal(request(outside, 'tcp', '198.51.100.1', 8111), '198.51.100.2 80');
          // The guard: 127.0.0.0/8 arriving on another interface is dropped before NAT.
          assert.match(fw === 'iptables' ? h.sh('iptables-save', '-t', 'raw').stdout : h.sh('nft', 'list', 'chain', 'inet', 'tsnet', 'raw').stdout, /127\.0\.0\.0\/8 .*(-j DROP|drop)/);
        } finally {
          server2.kill();
        }
      } finally {
        server.kill();
      }
    }, { firewall: fw }));
}

test('--firewall none: published ports are served by the proxy alone (TCP and UDP, source is the host)', { skip }, async () =>
  withHost(async (h) => {
    const outside = h.addOutside();
    h.ok(['sandbox', 'create', '-p', '8095:80', '-p', '5395:53/udp', 'web']);
    assert.doesNotMatch(h.iptables(), /TSNET/, 'no firewall rules at all');
    const servers = [await startServer(sbxPath(h, 'web'), 'tcp', [80]), await startServer(sbxPath(h, 'web'), 'udp', [53])];
    try {
      assert.equal(request(outside, 'tcp', '198.51.100.1', 8095), '172.17.0.1 80');
      assert.equal(request(outside, 'udp', '198.51.100.1', 5395), '172.17.0.1 53');
      assert.equal(request(h.nsPath, 'tcp', '127.0.0.1', 8095), '172.17.0.1 80');
    } finally {
      for (const x of servers) x.kill();
    }
  }, { firewall: 'none' }));

test('switching --firewall from iptables to nftables (and back) moves every rule, said on stderr; a read under another backend moves nothing', { skip }, async () =>
  withHost(async (h) => {
    const outside = h.addOutside();
    h.ok(['sandbox', 'create', '-p', '8080:80', 'web']);
    const server = await startServer(sbxPath(h, 'web'), 'tcp', [80]);
    try {
      assert.equal(request(outside, 'tcp', '198.51.100.1', 8080), '198.51.100.2 80');
      const rules = h.iptables();
      assert.match(rules, /TSNET-/);
      // Reads under another backend (even none) leave every rule where it is.
      for (const fw of ['none', 'nftables']) {
        const ls = h.tsnet(['network', 'ls'], { TSNET_FIREWALL: fw });
        assert.equal(ls.code, 0, ls.stderr);
        assert.equal(ls.stderr, '', 'a read says nothing about backends');
        assert.equal(h.tsnet(['sandbox', 'inspect', 'web'], { TSNET_FIREWALL: fw }).code, 0);
      }
      assert.equal(h.iptables(), rules, 'reads under --firewall none or nftables moved nothing');
      assert.equal(h.sh('nft', 'list', 'table', 'inet', 'tsnet').code, 1);
      // A changing command under the other backend moves the rules over, and says so.
      const moved = h.tsnet(['system', 'reconcile'], { TSNET_FIREWALL: 'nftables' });
      assert.equal(moved.code, 0, moved.stderr);
      assert.match(moved.stderr, /^Warning: firewall backend changed from iptables to nftables/m);
      assert.doesNotMatch(h.iptables(), /TSNET-|tsnet/, `no iptables rule or chain of tsnet is left:\n${h.iptables()}`);
      assert.match(natRules(h, 'nftables'), /8080/);
      assert.equal(request(outside, 'tcp', '198.51.100.1', 8080), '198.51.100.2 80', 'served through nftables');
      assert.equal(h.tsnet(['system', 'reconcile'], { TSNET_FIREWALL: 'iptables' }).code, 0);
      assert.equal(h.sh('nft', 'list', 'table', 'inet', 'tsnet').code, 1, 'the nftables table is gone');
      assert.match(natRules(h, 'iptables'), /--dport 8080/);
      assert.equal(request(outside, 'tcp', '198.51.100.1', 8080), '198.51.100.2 80', 'served through iptables again');
    } finally {
      server.kill();
    }
  }));
