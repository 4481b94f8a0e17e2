// tsnet-ipam driven as an orchestrator (or a main plugin) drives an IPAM plugin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCni, skipReason, throwawayNamespace } from '../integration/harness.js';

const skip = skipReason();

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-ipam-'));
  const bin = join(dir, 'bin');
  const r = installCni(bin, join(dir, 'run'));
  assert.equal(r.code, 0, r.stderr);
  // The plugin (and the CNI server it starts) runs in a throwaway host namespace.
  const ns = throwawayNamespace();
  return {
    plugin: ns.enter([join(bin, 'tsnet-ipam')]),
    data: join(dir, 'data'),
    done: () => {
      ns.done();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const confOf = (data: string, ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: '1.1.0', name: 'net1', type: 'tsnet-bridge', bridge: 'cni0', isGateway: true,
    ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.30.0.0/16' }], [{ subnet: 'fd00:30::/64' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: data, ...ipam },
    ...extra,
  });

const env = (cmd: string, id: string) => ({ PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: '', CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0' });
function call(plugin: string[], cmd: string, id: string, conf: string) {
  const r = spawnSync(plugin[0]!, plugin.slice(1), { input: conf, encoding: 'utf8', env: env(cmd, id) });
  return { code: r.status, out: r.stdout.trim() ? JSON.parse(r.stdout) : undefined, raw: r.stdout };
}

test('tsnet-ipam: dual-stack ADD, repeated ADD, CHECK, DEL twice, GC of attachments that no longer exist', { skip }, () => {
  const { plugin, data, done } = setup();
  try {
    const conf = confOf(data);
    const a = call(plugin, 'ADD', 'c1', conf);
    assert.equal(a.code, 0, a.raw);
    assert.deepEqual(a.out.ips, [{ address: '10.30.0.2/16', gateway: '10.30.0.1' }, { address: 'fd00:30::2/64', gateway: 'fd00:30::1' }]);
    assert.deepEqual(a.out.routes, [{ dst: '0.0.0.0/0' }]);
    assert.deepEqual(call(plugin, 'ADD', 'c1', conf).out.ips, a.out.ips, 'ADD again: the same addresses');
    assert.equal(call(plugin, 'ADD', 'c2', conf).out.ips[0].address, '10.30.0.3/16');
    assert.equal(call(plugin, 'CHECK', 'c1', conf).code, 0);
    unlinkSync(join(data, 'net1', '10.30.0.2'));
    const chk = call(plugin, 'CHECK', 'c1', conf);
    assert.equal(chk.out.code, 102, 'CHECK notices the missing reservation');
    assert.equal(call(plugin, 'DEL', 'c2', conf).code, 0);
    assert.equal(call(plugin, 'DEL', 'c2', conf).code, 0, 'DEL twice');
    assert.ok(!existsSync(join(data, 'net1', '10.30.0.3')));
    // GC: c3 and c4 hold addresses; only c4 is still valid.
    call(plugin, 'ADD', 'c3', conf);
    call(plugin, 'ADD', 'c4', conf);
    const gcConf = JSON.parse(conf);
    gcConf['cni.dev/valid-attachments'] = [{ containerID: 'c4', ifname: 'eth0' }];
    const gc = spawnSync(plugin[0]!, plugin.slice(1), { input: JSON.stringify(gcConf), encoding: 'utf8', env: { PATH: process.env.PATH ?? '', CNI_COMMAND: 'GC' } });
    assert.equal(gc.status, 0, gc.stdout);
    const left = readdirSync(join(data, 'net1')).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'));
    assert.deepEqual(left.sort(), ['10.30.0.5', 'fd00:30::5']);
  } finally {
    done();
  }
});

test('tsnet-ipam: 200 concurrent ADDs get 200 distinct addresses and no failure', { skip }, async () => {
  const { plugin, data, done } = setup();
  try {
    const conf = confOf(data, { ranges: [[{ subnet: '10.31.0.0/24' }]] });
    const runs = Array.from({ length: 200 }, (_, i) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn(plugin[0]!, plugin.slice(1), { env: env('ADD', `c${i}`) });
        let out = '';
        c.stdout.on('data', (d) => (out += d));
        c.on('close', (code) => resolve({ code, out }));
        c.stdin.end(conf);
      }),
    );
    const res = await Promise.all(runs);
    assert.deepEqual(res.filter((r) => r.code !== 0), []);
    const addrs = res.map((r) => JSON.parse(r.out).ips[0].address);
    assert.equal(new Set(addrs).size, 200);
  } finally {
    done();
  }
});

test('tsnet-ipam: bad configurations get the spec\'s codes', { skip }, () => {
  const { plugin, data, done } = setup();
  try {
    const cases: Array<[string, string, number]> = [
      ['no ipam', JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 't' }), 7],
      ['unknown ipam field', confOf(data, { frob: 1 }), 2],
      ['rangeStart outside the subnet', confOf(data, { ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.5' }]] }), 7],
      ['bad subnet', confOf(data, { ranges: [[{ subnet: '10.0.0.0/33' }]] }), 7],
      ['empty ranges', confOf(data, { ranges: [] }), 7],
      ['relative dataDir', confOf(data, { dataDir: 'var/lib/cni' }), 7],
      ['exhausted', confOf(data, { ranges: [[{ subnet: '10.9.9.0/30' }]] }), 0],
    ];
    for (const [what, conf, code] of cases) {
      const r = call(plugin, 'ADD', 'x', conf);
      if (code === 0) {
        assert.equal(r.code, 0, what);
        assert.equal(call(plugin, 'ADD', 'y', conf).out.code, 11, 'a full /30 says try again later');
        continue;
      }
      assert.equal(r.out?.code, code, `${what}: ${r.raw}`);
    }
  } finally {
    done();
  }
});
