// Bad input changes nothing; a process killed mid-operation leaves nothing behind;
// reconcile repairs what was broken by hand; parallel commands stay consistent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TSNET_BIN, runSync, skipReason, withHost, type TestHost } from './harness.js';

const skip = skipReason('ping');

function snapshot(h: TestHost) {
  return {
    state: readFileSync(join(h.root, 'state.json'), 'utf8'),
    links: h.links(),
    fw: h.iptables(),
    pins: h.sh('ls', join(h.runDir, 'netns')).stdout,
  };
}

function expectRefused(h: TestHost, args: string[], pattern: RegExp): void {
  const before = snapshot(h);
  const r = h.tsnet(args);
  assert.notEqual(r.code, 0, `tsnet ${args.join(' ')} should fail`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0]!, /^Error: /);
  assert.match(lines[0]!, pattern);
  assert.equal(r.stdout, '');
  assert.deepEqual(snapshot(h), before, `tsnet ${args.join(' ')} changed something`);
}

test('bad input gets one clear error line and changes nothing', { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--subnet', '10.10.0.0/24', 'n1']);
    h.ok(['sandbox', 'create', '--network', 'n1', 'a']);
    expectRefused(h, ['network', 'create', '--subnet', '10.0.0.0/33', 'x'], /prefix length 33/);
    expectRefused(h, ['network', 'create', '--subnet', '10.0.0.300/24', 'x'], /invalid subnet/);
    expectRefused(h, ['network', 'create', '--subnet', '10.20.0.1/24', 'x'], /host bits are set/);
    expectRefused(h, ['network', 'create', '--subnet', '10.20.0.0/24', '--gateway', '10.21.0.1', 'x'], /not inside any subnet/);
    expectRefused(h, ['network', 'create', '--subnet', '10.10.0.128/25', 'x'], /overlaps with subnet 10\.10\.0\.0\/24 of network n1/);
    expectRefused(h, ['network', 'create', 'n1'], /already exists/);
    expectRefused(h, ['network', 'create', '-o', 'com.docker.network.bridge.name=averyveryverylongname', 'x'], /at most 15/);
    expectRefused(h, ['network', 'create', 'bad;rm -rf /'], /invalid network name/);
    expectRefused(h, ['network', 'create', 'x$(id)'], /invalid network name/);
    expectRefused(h, ['network', 'create', '-o', 'com.docker.network.bridge.name=br -j ACCEPT', 'x'], /bridge name/);
    expectRefused(h, ['network', 'create', '-o', 'com.docker.network.bridge.enable_icc=maybe', 'x'], /true or false/);
    expectRefused(h, ['network', 'create', '-o', 'no.such.option=1', 'x'], /unknown option/);
    expectRefused(h, ['network', 'create', '--mtu', '20', 'x'], /MTU|mtu/);
    expectRefused(h, ['network', 'create', '-d', 'overlay', 'x'], /unknown network driver/);
    expectRefused(h, ['network', 'create', '-d', 'host', 'x'], /only one instance/);
    expectRefused(h, ['network', 'create', '--bogus', 'x'], /unknown flag/);
    expectRefused(h, ['network', 'connect', 'nope', 'a'], /network nope not found/);
    expectRefused(h, ['network', 'connect', 'n1', 'nope'], /sandbox nope not found/);
    expectRefused(h, ['network', 'connect', 'n1', 'a'], /already connected/);
    expectRefused(h, ['network', 'connect', '--ifname', 'abcdefghijklmnop', 'bridge', 'a'], /at most 15/);
    expectRefused(h, ['network', 'connect', '--ifname', 'eth0', 'bridge', 'a'], /already has an interface named eth0/);
    expectRefused(h, ['network', 'connect', '--ip', '10.99.0.5', 'bridge', 'a'], /not in any subnet/);
    expectRefused(h, ['network', 'connect', '--ip', '172.17.0.1', 'bridge', 'a'], /in use.*gateway/);
    expectRefused(h, ['network', 'rm', 'n1'], /has active endpoints \(a\)/);
    expectRefused(h, ['network', 'rm', 'bridge'], /pre-defined/);
    expectRefused(h, ['network', 'rm', 'nope'], /network nope not found/);
    expectRefused(h, ['network', 'disconnect', 'bridge', 'a'], /not connected/);
    expectRefused(h, ['sandbox', 'create', 'a'], /already exists/);
    expectRefused(h, ['sandbox', 'create', 'a b'], /invalid sandbox name/);
    expectRefused(h, ['sandbox', 'create', '--netns', '/nonexistent', 'x'], /not a network namespace/);
    expectRefused(h, ['sandbox', 'create', '--network', 'container:nope', 'x'], /sandbox nope not found/);
    expectRefused(h, ['sandbox', 'rm', 'nope'], /not found/);
    expectRefused(h, ['sandbox', 'create', '--pid', '999999999', 'x'], /process 999999999 not found/);

    // Exhausting a /30: one endpoint fits beside the gateway; the second is refused.
    h.ok(['network', 'create', '--subnet', '10.30.0.0/30', 'tiny']);
    h.ok(['sandbox', 'create', '--network', 'tiny', 't1']);
    expectRefused(h, ['sandbox', 'create', '--network', 'tiny', 't2'], /no free IPv4 address left in network tiny/);
    h.ok(['sandbox', 'create', '--network', 'none', 't2']);
    expectRefused(h, ['network', 'connect', 'tiny', 't2'], /none network/);
  }));

test('a failure midway rolls back what was done', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'warm']);
    const links = h.links();
    const fw = h.iptables();
    for (const point of ['connect:after-join', 'sandbox-create:after-netns', 'network-create:after-apply']) {
      const args = point.startsWith('network') ? ['network', 'create', 'x'] : ['sandbox', 'create', 'x'];
      const r = h.tsnet(args, { TSNET_FAULT: `${point}:fail` });
      assert.notEqual(r.code, 0, point);
      assert.match(r.stderr, /injected failure/);
      assert.deepEqual(h.links(), links, `${point}: links rolled back`);
      assert.equal(h.iptables(), fw, `${point}: rules rolled back`);
      assert.equal(h.ok(['sandbox', 'ls', '-q']).split('\n').length, 1);
      assert.deepEqual(h.ok(['network', 'ls', '--format', 'json']).split('\n').map((l) => JSON.parse(l).Name), ['bridge', 'host', 'none']);
    }
  }));

async function killAt(h: TestHost, args: string[], point: string): Promise<void> {
  const child = h.spawnTsnet(args, { TSNET_FAULT: `${point}:hang` });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no hang at ${point}: ${err}`)), 10000);
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.includes(`hang at ${point}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`exited before ${point}: ${err}`));
    });
  });
  child.removeAllListeners('exit');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
}

test('SIGKILL in the middle of connect, disconnect, create or rm leaves nothing after the next command', { skip }, async () =>
  withHost(async (h) => {
    h.ok(['network', 'create', '--subnet', '10.40.0.0/24', 'n']);
    h.ok(['sandbox', 'create', '--network', 'none', 's']);
    // Connect killed before and after the veth exists.
    h.ok(['sandbox', 'create', '--network', 'n', 'k']);
    h.ok(['network', 'disconnect', 'n', 'k']);
    const base = { links: h.links(), fw: h.iptables() };
    for (const point of ['connect:before-join', 'connect:after-join']) {
      await killAt(h, ['network', 'connect', 'n', 'k'], point);
      // Any command, even a read-only one, finishes the dead operation first.
      const inspect = JSON.parse(h.ok(['network', 'inspect', 'n']))[0];
      assert.deepEqual(inspect.Containers, {}, `${point}: endpoint released`);
      assert.deepEqual(h.links(), base.links, `${point}: no leaked veth`);
      assert.equal(h.inSandbox('k', 'ip', 'link', 'show', 'eth0').code, 1, `${point}: nothing left in the sandbox`);
    }
    // The released address is handed out again.
    h.ok(['network', 'connect', 'n', 'k']);
    await killAt(h, ['network', 'disconnect', 'n', 'k'], 'disconnect:after-mark');
    assert.deepEqual(JSON.parse(h.ok(['network', 'inspect', 'n']))[0].Containers, {});
    assert.deepEqual(h.links(), base.links);

    await killAt(h, ['sandbox', 'create', '--network', 'n', 'z'], 'connect:after-join');
    h.ok(['network', 'ls']);
    assert.deepEqual(h.links(), base.links);
    assert.equal(h.sh('ls', join(h.runDir, 'netns')).stdout.split('\n').filter(Boolean).sort().join(','), 'k,s');

    await killAt(h, ['network', 'create', '--subnet', '10.41.0.0/24', 'half'], 'network-create:after-apply');
    h.ok(['network', 'ls']);
    assert.notEqual(h.tsnet(['network', 'inspect', 'half']).code, 0);
    assert.deepEqual(h.links(), base.links);
    assert.equal(h.iptables(), base.fw);

    await killAt(h, ['sandbox', 'rm', 'k'], 'sandbox-rm:after-mark');
    h.ok(['network', 'ls']);
    assert.notEqual(h.tsnet(['sandbox', 'inspect', 'k']).code, 0);
    assert.equal(h.sh('ls', join(h.runDir, 'netns')).stdout.trim(), 's');
  }));

test('reconcile re-creates a deleted bridge and flushed rules, and removes leaked links', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'a']);
    h.ok(['sandbox', 'create', 'b']);
    const fw = h.iptables();
    // Flush and delete our chains and the bridge by hand ("reboot-like loss").
    h.sh('iptables', '-F', 'FORWARD');
    h.sh('iptables', '-t', 'nat', '-F', 'POSTROUTING');
    // (TSNET-USER is the operator's chain: tsnet never rewrites it.)
    for (const c of h.sh('iptables-save', '-t', 'filter').stdout.match(/^:TSNET-\S+/gm) ?? []) {
      if (c !== ':TSNET-USER') h.sh('iptables', '-F', c.slice(1));
    }
    assert.notEqual(h.iptables(), fw);
    h.sh('ip', 'link', 'del', 'tsnet0');
    h.ok(['system', 'reconcile']);
    assert.equal(h.iptables(), fw, 'rules restored exactly');
    assert.ok(h.links().includes('tsnet0'));
    assert.ok(h.ping('a', '172.17.0.3'), 'endpoints re-plumbed onto the re-created bridge');
    // A tagged link that no record owns goes; an untagged one stays.
    const tag = h.sh('ip', '-o', 'link', 'show', 'tsnet0').stdout.match(/alias (\S+)/)?.[1] ?? '';
    assert.match(tag, /^tsnet:[0-9a-f]{8}:bridge$/);
    h.sh('ip', 'link', 'add', 'leak0', 'type', 'bridge');
    h.sh('ip', 'link', 'set', 'leak0', 'alias', `${tag.split(':').slice(0, 2).join(':')}:gone`);
    h.sh('ip', 'link', 'add', 'keep0', 'type', 'bridge');
    // An ordinary command sweeps for leaked links only when the last sweep is stale
    // (TSNET_SWEEP_INTERVAL, 30 s by default); with 0 it sweeps every time.
    h.ok(['network', 'create', 'trigger']);
    assert.ok(h.links().includes('leak0'), 'the sweep after `system reconcile` is still fresh');
    assert.equal(h.tsnet(['network', 'create', 'trigger2'], { TSNET_SWEEP_INTERVAL: '0' }).code, 0);
    assert.ok(!h.links().includes('leak0'));
    assert.ok(h.links().includes('keep0'));
    // The operator's TSNET-USER rules survive reconcile.
    h.sh('iptables', '-I', 'TSNET-USER', '1', '-s', '192.0.2.1', '-j', 'DROP');
    h.sh('iptables', '-F', 'TSNET-FORWARD');
    h.ok(['system', 'reconcile']);
    assert.match(h.iptables(), /-A TSNET-USER -s 192\.0\.2\.1\/32 -j DROP/);
  }));

test('parallel connects get distinct addresses and consistent state', { skip }, async () =>
  withHost(async (h) => {
    h.ok(['network', 'create', '--subnet', '10.50.0.0/24', 'par']);
    const names = Array.from({ length: 12 }, (_, i) => `p${i}`);
    for (const n of names) h.ok(['sandbox', 'create', '--network', 'none', n]);
    h.ok(['network', 'disconnect', 'none', 'p0']);
    for (const n of names.slice(1)) h.ok(['network', 'disconnect', 'none', n]);
    const runs = names.map(
      (n) =>
        new Promise<number>((resolve) => {
          const c = h.spawnTsnet(['network', 'connect', 'par', n]);
          c.on('close', (code) => resolve(code ?? -1));
        }),
    );
    assert.deepEqual(await Promise.all(runs), names.map(() => 0));
    const members = Object.values(h.inspect('network', 'par').Containers) as Array<{ Name: string; IPv4Address: string }>;
    assert.equal(new Set(members.map((c) => c.IPv4Address)).size, names.length);
    // Every pair of neighbours reaches each other at the addresses the state records.
    const addr = new Map(members.map((c) => [c.Name, c.IPv4Address.split('/')[0]!]));
    for (let i = 0; i < names.length; i++) {
      const from = names[i]!;
      const to = names[(i + 1) % names.length]!;
      assert.ok(h.ping(from, addr.get(to)!), `${from} reaches ${to} at ${addr.get(to)}`);
    }
  }));

test('a state file that is valid JSON of the wrong shape is named, with the backup to restore; a full disk leaves no temp file', { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', 'keep']);
    h.ok(['network', 'create', 'n2']);
    const good = readFileSync(join(h.root, 'state.json'), 'utf8');
    for (const bad of ['{}', 'null', '[]', '{"version":1,"networks":{"x":{"id":"x"}},"endpoints":{},"sandboxes":{}}', '{"version":1']) {
      writeFileSync(join(h.root, 'state.json'), bad);
      for (const args of [['network', 'ls'], ['network', 'create', 'n3']]) {
        const r = h.tsnet(args);
        assert.equal(r.code, 13, `${bad}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^Error: state file ${join(h.root, 'state.json')} is invalid \\(.+\\); the previous state is in ${join(h.root, 'state.json.bak')}: restore it with 'cp `));
        assert.doesNotMatch(r.stderr, /TypeError|\n\s+at /, 'no JavaScript error or stack');
        assert.equal(readFileSync(join(h.root, 'state.json'), 'utf8'), bad, 'nothing was written over it');
      }
    }
    // The backup is the state before the last write: restoring it is a working state.
    writeFileSync(join(h.root, 'state.json'), readFileSync(join(h.root, 'state.json.bak'), 'utf8'));
    assert.match(h.ok(['network', 'ls', '--format', '{{.Name}}']), /keep/);
    writeFileSync(join(h.root, 'state.json'), good);

    // A full disk, in a private mount namespace of this test's own (the host's mounts are untouched).
    const script = [
      `mount -t tmpfs -o size=128k tsnet-full ${h.dir}/full-root`,
      `TSNET_ROOT=${h.dir}/full-root ${process.execPath} ${TSNET_BIN} network create first >/dev/null`,
      `dd if=/dev/zero of=${h.dir}/full-root/filler bs=4k 2>/dev/null; sync`,
      `TSNET_ROOT=${h.dir}/full-root ${process.execPath} ${TSNET_BIN} network create second; echo "code=$?"`,
      `ls -a ${h.dir}/full-root`,
    ].join('\n');
    h.sh('mkdir', '-p', join(h.dir, 'full-root'));
    const r = runSync(['nsenter', `--net=${h.nsPath}`, '--', 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script]);
    assert.match(r.stdout, /code=10/, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot write the state file .*: ENOSPC/);
    assert.doesNotMatch(r.stdout, /\.tmp/, `no temp file left:\n${r.stdout}`);
  }));
