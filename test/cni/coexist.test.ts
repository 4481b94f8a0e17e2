// The CLI's controller and the CNI plugins on one host: each reconciles and tears
// down only what it owns (firewall/ownership.ts), whichever comes first and with
// either backend, and traffic keeps flowing through both kinds of published ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { skipReason, TestHost } from '../integration/harness.js';
import { request, startServer } from '../integration/netprobe.js';
import { world } from './world.js';

const skip = skipReason('nft', 'ping');

for (const backend of ['iptables', 'nftables'] as const) {
  for (const order of ['CLI first', 'CNI first'] as const) {
    test(`CLI and CNI plugins on one host (${backend}, ${order}): neither removes the other's rules; both published ports answer`, { skip, timeout: 120_000 }, async () => {
      const h = TestHost.create({ firewall: backend });
      const w = world({ hostNs: h.name });
      const servers = [];
      try {
        const outside = h.addOutside();
        const pod = w.container();
        const pm = (prev: unknown) =>
          JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'tsnet-portmap', backend, runtimeConfig: { portMappings: [{ hostPort: 8181, containerPort: 80 }] }, prevResult: prev });
        let prev: unknown;
        const cni = () => {
          const br = w.call('ADD', 'pod1', pod, w.conf());
          assert.equal(br.code, 0, br.raw);
          prev = br.out;
          const r = w.call('ADD', 'pod1', pod, pm(prev), 'tsnet-portmap');
          assert.equal(r.code, 0, r.raw);
        };
        const cli = () => h.ok(['sandbox', 'create', '-p', '8282:80', 'web']);
        if (order === 'CLI first') {
          cli();
          cni();
        } else {
          cni();
          cli();
        }
        servers.push(await startServer(`/run/netns/${pod}`, 'tcp', [80]), await startServer(join(h.runDir, 'netns', 'web'), 'tcp', [80]));
        const both = (what: string) => {
          assert.equal(request(outside, 'tcp', '198.51.100.1', 8181), '198.51.100.2 80', `${what}: the pod's published port`);
          assert.equal(request(outside, 'tcp', '198.51.100.1', 8282), '198.51.100.2 80', `${what}: the sandbox's published port`);
        };
        both('after both set up');
        // Commands that reconcile (a full check, not the generation fast path) leave the plugins' rules alone.
        h.ok(['network', 'create', 'other']);
        h.sh('rm', '-f', join(h.runDir, 'firewall.mark'));
        h.ok(['system', 'reconcile']);
        h.ok(['network', 'ls']);
        assert.equal(w.call('CHECK', 'pod1', pod, pm(prev), 'tsnet-portmap').code, 0, 'the plugin finds its rules');
        both('after the CLI reconciled');
        // The plugins' DEL leaves the CLI's rules.
        assert.equal(w.call('DEL', 'pod1', pod, pm(prev), 'tsnet-portmap').code, 0);
        assert.equal(w.call('DEL', 'pod1', pod, w.conf()).code, 0);
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8282), '198.51.100.2 80', 'the sandbox port after the pod left');
        assert.equal(request(outside, 'tcp', '198.51.100.1', 8181), 'error ECONNREFUSED', 'the pod port is gone (the host itself answers)');
        h.ok(['sandbox', 'rm', 'web']);
        h.ok(['network', 'rm', 'other']);
      } finally {
        for (const s of servers) s.kill();
        w.done();
        h.destroy();
      }
    });
  }
}
