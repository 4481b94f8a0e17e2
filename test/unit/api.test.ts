// The Api over the in-memory kernel: what a front end sees is views, filtered and
// shaped, never records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKernel } from '../../src/system/fake/index.js';
import { compose } from '../../src/compose/index.js';
import { silentLogger } from '../../src/log.js';

test('LocalApi: list with filters, inspect in Docker\'s keys, published ports by port, removal per name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-api-'));
  try {
    // No userland proxy: nothing to start in a unit test, and [::] lines then need IPv6.
    const { api } = compose({ root: join(dir, 'root'), runDir: join(dir, 'run'), firewall: 'none', userlandProxy: false }, silentLogger(), new FakeKernel());
    await api.createNetwork({ name: 'front', subnets: ['10.9.0.0/24'], labels: { tier: 'web' } });
    await api.createSandbox({ name: 'web', network: 'front', publish: ['8080:80', '127.0.0.1:5353:53/udp'] });
    assert.deepEqual((await api.listNetworks({ label: ['tier=web'] })).map((n) => n.name), ['front']);
    assert.deepEqual((await api.listNetworks({ type: ['builtin'] })).map((n) => n.name), ['bridge', 'host', 'none']);
    const [sbx] = await api.listSandboxes({ network: ['front'] });
    assert.equal(sbx?.name, 'web');
    assert.deepEqual(sbx?.networks, ['front']);
    assert.deepEqual(sbx?.ports, [
      { containerPort: 80, proto: 'tcp', hostIP: '0.0.0.0', hostPort: 8080 },
      { containerPort: 53, proto: 'udp', hostIP: '127.0.0.1', hostPort: 5353 },
    ]);
    assert.deepEqual((await api.ports('web', '53/udp')).ports, [{ containerPort: 53, proto: 'udp', hostIP: '127.0.0.1', hostPort: 5353 }]);
    assert.deepEqual((await api.ports('web', '53')).ports, [], 'a bare port means tcp, as docker port');
    const [net] = await api.inspectNetworks(['front']);
    assert.equal(net?.Name, 'front');
    assert.deepEqual((net?.IPAM as { Config: unknown[] }).Config, [{ Subnet: '10.9.0.0/24', Gateway: '10.9.0.1' }]);
    const [ins] = await api.inspectSandboxes(['web']);
    assert.equal((ins?.Networks as Record<string, { IPAddress: string }>).front?.IPAddress, '10.9.0.2');
    const r = await api.removeSandboxes(['web', 'nope']);
    assert.deepEqual(r.removed, ['web']);
    assert.equal(r.failed[0]?.error.code, 'NOT_FOUND', 'failures are typed tsnet errors');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
