// Planning the CNI plugins' iptables transactions (pure): chains are declared only
// when missing (declaring an existing chain under --noflush empties it), duplicates
// and unique rules are not added twice, an emptied chain goes with its hooks, and
// a guard lives exactly as long as the rules it protects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planTagged, networkToken, ruleTag, type TaggedChange } from '../../src/cni/rules.js';

const saved = (nat: string[], raw: string[] = []) =>
  ['*nat', ':PREROUTING ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...nat, 'COMMIT', '*raw', ':PREROUTING ACCEPT [0:0]', ...raw, 'COMMIT', ''].join('\n');
const masq = (add: string[], remove: (r: string) => boolean = () => false): TaggedChange => ({
  table: 'nat', chain: 'TSNET-CNI-MASQ', hooks: [{ chain: 'POSTROUTING', rule: '-j TSNET-CNI-MASQ' }], add: { 4: add, 6: [] }, remove, dropWhenEmpty: true,
});
const guard: TaggedChange = {
  table: 'raw', chain: 'G', hooks: [{ chain: 'PREROUTING', rule: '-j G' }], add: { 4: ['-d 127.0.0.0/8 ! -i lo -j DROP'], 6: [] }, remove: () => false, unique: true, onlyWhile: 'nat/TSNET-CNI-MASQ',
};

test('a missing chain is declared and hooked; an existing one never is', () => {
  const first = planTagged(saved([]), [masq(['-s 10.0.0.2/32 -j MASQUERADE'])], 4).input!;
  assert.match(first, /^:TSNET-CNI-MASQ - \[0:0\]$/m);
  assert.match(first, /^-A POSTROUTING -j TSNET-CNI-MASQ$/m);
  const next = planTagged(saved([':TSNET-CNI-MASQ - [0:0]', '-A POSTROUTING -j TSNET-CNI-MASQ', '-A TSNET-CNI-MASQ -s 10.0.0.2/32 -j MASQUERADE']), [masq(['-s 10.0.0.3/32 -j MASQUERADE'])], 4).input!;
  assert.doesNotMatch(next, /^:TSNET-CNI-MASQ/m, 'declaring it would flush 10.0.0.2\'s rule');
  assert.doesNotMatch(next, /-A POSTROUTING/, 'the hook is there already');
  assert.match(next, /^-A TSNET-CNI-MASQ -s 10\.0\.0\.3\/32 -j MASQUERADE$/m);
});

test('the last rule out takes the chain and its hook; the guard follows the rules it covers', () => {
  const have = [':TSNET-CNI-MASQ - [0:0]', '-A POSTROUTING -j TSNET-CNI-MASQ', '-A TSNET-CNI-MASQ -s 10.0.0.2/32 -j MASQUERADE'];
  const withGuard = planTagged(saved([]), [masq(['-s 10.0.0.2/32 -j MASQUERADE']), guard], 4);
  assert.match(withGuard.input!, /^\*raw\n:G - \[0:0\]\n-A PREROUTING -j G\n-A G -d 127\.0\.0\.0\/8 ! -i lo -j DROP$/m);
  const again = planTagged(saved(have, [':G - [0:0]', '-A PREROUTING -j G', '-A G -d 127.0.0.0/8 ! -i lo -j DROP']), [masq(['-s 10.0.0.3/32 -j MASQUERADE']), guard], 4);
  assert.doesNotMatch(again.input!, /\*raw/, 'unique: the guard is not added twice');
  const gone = planTagged(saved(have, [':G - [0:0]', '-A PREROUTING -j G', '-A G -d 127.0.0.0/8 ! -i lo -j DROP']), [masq([], (r) => r.includes('10.0.0.2')), guard], 4);
  assert.deepEqual(gone.remaining.get('nat/TSNET-CNI-MASQ'), []);
  assert.match(gone.input!, /-D TSNET-CNI-MASQ -s 10\.0\.0\.2\/32 -j MASQUERADE\n-D POSTROUTING -j TSNET-CNI-MASQ\n-X TSNET-CNI-MASQ/);
  assert.match(gone.input!, /-D G -d 127\.0\.0\.0\/8 ! -i lo -j DROP\n-D PREROUTING -j G\n-X G/);
  assert.equal(planTagged(saved([]), [masq([], () => true), guard], 4).input, undefined, 'nothing to do on an empty host');
});

test('tags stay within a comment whatever the name length', () => {
  assert.equal(networkToken('net1'), 'net1');
  const long = networkToken('n'.repeat(250));
  assert.match(long, /^@[0-9a-f]{16}$/);
  assert.ok(ruleTag('tsnet-pm', 'n'.repeat(250), 'c'.repeat(1000), 'eth0').length < 60);
  assert.throws(() => ruleTag('tsnet-pm', 'a"b', 'c', 'eth0'), /refusing/);
});
