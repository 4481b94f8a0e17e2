// Owners of kernel names never overlap: a name one owner generates is never one
// another owner would claim; and each renderer only writes names it owns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OWNERS, CONTROLLER, CNI_BRIDGE, CNI_PORTMAP, ownsChain, jumpsToOwned, type Owner } from '../../src/firewall/ownership.js';
import { CHAIN, networkChain } from '../../src/firewall/iptables/render.js';
import { TABLE } from '../../src/firewall/nftables/render.js';
import { commentText, ifaceText } from '../../src/firewall/text.js';

const claims = (o: Owner, kind: 'chains' | 'comments' | 'links' | 'aliases' | 'nftTables', name: string) =>
  kind === 'chains' ? ownsChain(o, name) : (o[kind] as readonly string[]).some((p) => (kind === 'nftTables' ? name === p : name.startsWith(p)));

test('no two owners share a chain, a prefix, a table, a comment, link or alias prefix', () => {
  for (const a of OWNERS) {
    for (const b of OWNERS) {
      if (a === b) continue;
      for (const c of [...a.chains, ...a.chainPrefixes.map((p) => `${p}x`)]) assert.ok(!claims(b, 'chains', c), `${a.name}'s chain ${c} is claimed by ${b.name}`);
      for (const p of b.chainPrefixes) for (const c of a.chainPrefixes) assert.ok(!c.startsWith(p) && !p.startsWith(c), `${a.name} and ${b.name} share chain prefix ${p}/${c}`);
      for (const kind of ['comments', 'links', 'aliases', 'nftTables'] as const) {
        for (const n of a[kind]) {
          assert.ok(!claims(b, kind, n), `${a.name}'s ${kind} ${n} is claimed by ${b.name}`);
          // Tables are exact names; the others are prefixes and must not nest.
          for (const m of b[kind]) assert.ok(kind === 'nftTables' ? n !== m : !n.startsWith(m) && !m.startsWith(n), `${kind}: ${n} and ${m} overlap`);
        }
      }
    }
  }
});

test('the controller owns its own chains and none of the plugins\'', () => {
  for (const c of [...Object.values(CHAIN), networkChain('0123456789abcdef')]) assert.ok(ownsChain(CONTROLLER, c), c);
  for (const c of [...CNI_BRIDGE.chains, ...CNI_PORTMAP.chains]) assert.ok(!ownsChain(CONTROLLER, c), c);
  assert.ok(jumpsToOwned(CONTROLLER, '-j TSNET-FORWARD'));
  assert.ok(!jumpsToOwned(CONTROLLER, '-m addrtype --dst-type LOCAL -j TSNET-CNI-HOSTPORT'));
  assert.ok(CONTROLLER.nftTables.includes(TABLE));
});

test('rule text guards refuse what could break out of a comment or an interface argument', () => {
  assert.equal(commentText('tsnet-pm:net1:0123abcd'), 'tsnet-pm:net1:0123abcd');
  for (const bad of ['a"b', 'a\nb', 'a b', "a'b", 'a\\b', '', 'x'.repeat(256), 'a;b']) assert.throws(() => commentText(bad), /refusing/, JSON.stringify(bad));
  assert.equal(ifaceText('tsnet0'), 'tsnet0');
  for (const bad of ['a"', 'br 0', 'x'.repeat(16), '']) assert.throws(() => ifaceText(bad), /refusing/);
});
