// Golden files of the rendered iptables transactions, and the planner's behaviour
// against parsed iptables-save output. UPDATE_GOLDEN=1 rewrites the files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planRestore, renderDesired } from '../../src/firewall/iptables/render.js';
import { parseIptablesSave } from '../../src/firewall/iptables/parse.js';
import type { FwState } from '../../src/firewall/backend.js';
import { chainsFor, planNft, renderElements } from '../../src/firewall/nftables/render.js';
import { parseNftTable } from '../../src/firewall/nftables/parse.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'golden', 'firewall');

function golden(name: string, actual: string): void {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN || !existsSync(file)) writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, 'utf8'), `golden ${name} differs (UPDATE_GOLDEN=1 to accept)`);
}

const STATE: FwState = {
  networks: [
    { id: 'aaaaaaaaaaaa1111', name: 'bridge', bridge: 'tsnet0', subnets: [{ family: 4, cidr: '172.17.0.0/16' }], internal: false, icc: true, masquerade: true },
    { id: 'bbbbbbbbbbbb2222', name: 'back', bridge: 'tsn-bbbbbbbbbbb', subnets: [{ family: 4, cidr: '10.9.0.0/24' }], internal: true, icc: false, masquerade: true },
    {
      id: 'cccccccccccc3333', name: 'dual', bridge: 'tsn-ccccccccccc',
      subnets: [{ family: 4, cidr: '10.8.0.0/24' }, { family: 6, cidr: 'fd00:8::/64' }], internal: false, icc: true, masquerade: false,
    },
  ],
};

const PORTS: FwState = {
  networks: STATE.networks,
  bindings: [
    { networkId: 'aaaaaaaaaaaa1111', network: 'bridge', endpointId: 'e1e1e1e1e1e1aaaa', bridge: 'tsnet0', family: 4, proto: 'tcp', hostIP: '', hostPort: 8080, hostPortEnd: 8080, containerIP: '172.17.0.2', containerPort: 80, containerPortEnd: 80 },
    { networkId: 'aaaaaaaaaaaa1111', network: 'bridge', endpointId: 'e1e1e1e1e1e1aaaa', bridge: 'tsnet0', family: 4, proto: 'udp', hostIP: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353, containerIP: '172.17.0.2', containerPort: 53, containerPortEnd: 53 },
    { networkId: 'aaaaaaaaaaaa1111', network: 'bridge', endpointId: 'e2e2e2e2e2e2bbbb', bridge: 'tsnet0', family: 4, proto: 'tcp', hostIP: '', hostPort: 9000, hostPortEnd: 9010, containerIP: '172.17.0.3', containerPort: 7000, containerPortEnd: 7010 },
    { networkId: 'aaaaaaaaaaaa1111', network: 'bridge', endpointId: 'e2e2e2e2e2e2bbbb', bridge: 'tsnet0', family: 4, proto: 'sctp', hostIP: '', hostPort: 3868, hostPortEnd: 3868, containerIP: '172.17.0.3', containerPort: 3868, containerPortEnd: 3868 },
    { networkId: 'cccccccccccc3333', network: 'dual', endpointId: 'e3e3e3e3e3e3cccc', bridge: 'tsn-ccccccccccc', family: 6, proto: 'tcp', hostIP: '2001:db8::1', hostPort: 443, hostPortEnd: 443, containerIP: 'fd00:8::2', containerPort: 8443, containerPortEnd: 8443 },
  ],
};

/** IPv6 clients of IPv4-only endpoints: the proxy serves them on INPUT. */
const PROXIED: FwState = {
  ...PORTS,
  proxied: [
    { family: 6, proto: 'tcp', hostIP: '', port: 8080, portEnd: 8080 },
    { family: 6, proto: 'tcp', hostIP: '2001:db8::7', port: 9000, portEnd: 9010 },
  ],
};

const EMPTY_SAVE = `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n`;

test('first install, IPv4 and IPv6 transactions', () => {
  golden('install-v4.rules', planRestore(renderDesired(STATE, 4), parseIptablesSave(EMPTY_SAVE))!);
  golden('install-v6.rules', planRestore(renderDesired(STATE, 6), parseIptablesSave(EMPTY_SAVE))!);
});

test('published ports: one DNAT rule per binding (ranges too), DNAT-only forwarding, hairpin and localhost masquerade', () => {
  golden('ports-v4.rules', planRestore(renderDesired(PORTS, 4), parseIptablesSave(EMPTY_SAVE))!);
  golden('ports-v6.rules', planRestore(renderDesired(PORTS, 6), parseIptablesSave(EMPTY_SAVE))!);
  const text = planRestore(renderDesired(PORTS, 4), parseIptablesSave(EMPTY_SAVE))!;
  assert.equal((text.match(/-j DNAT/g) ?? []).length, 4);
  assert.match(text, /--dport 9000:9010 .* --to-destination 172\.17\.0\.3:7000-7010\/9000/);
});

test('with the userland proxy, 127.0.0.0/8 is left to it: no OUTPUT DNAT of loopback, no masquerade of 127.0.0.0/8', () => {
  const viaProxy: FwState = { ...PORTS, localhost: 'proxy' };
  golden('ports-proxy-v4.rules', planRestore(renderDesired(viaProxy, 4), parseIptablesSave(EMPTY_SAVE))!);
  const v4 = planRestore(renderDesired(viaProxy, 4), parseIptablesSave(EMPTY_SAVE))!;
  assert.match(v4, /^-I OUTPUT 1 ! -d 127\.0\.0\.0\/8 -m addrtype --dst-type LOCAL -j TSNET-DNAT$/m);
  assert.doesNotMatch(v4, /-s 127\.0\.0\.0\/8/);
  assert.match(v4, /-m addrtype ! --src-type LOCAL -m conntrack --ctstate DNAT .* -j MASQUERADE/, 'hairpin only for container sources');
  const nft = planNft(viaProxy, undefined)!;
  assert.match(nft, /add rule inet tsnet output fib daddr type local ip daddr != 127\.0\.0\.0\/8 dnat ip to/);
  assert.doesNotMatch(nft, /ip saddr 127\.0\.0\.0\/8/);
  const listed = parseNftTable(simulateNftList(viaProxy));
  assert.equal(planNft(viaProxy, listed), undefined, 'a matching table needs nothing');
  assert.match(planNft(PORTS, listed)!, /flush chain inet tsnet output/, 'switching modes rewrites the chains that differ');
});

test('proxied ports: the operator\'s TSNET-USER sees them from INPUT (IPv6), also on a host without IPv6 networks', () => {
  golden('proxied-v6.rules', planRestore(renderDesired(PROXIED, 6), parseIptablesSave(EMPTY_SAVE))!);
  const v4only = planRestore(renderDesired({ networks: [STATE.networks[0]!], proxied: PROXIED.proxied }, 6), parseIptablesSave(EMPTY_SAVE))!;
  assert.match(v4only, /^-A TSNET-PROXY-INPUT -p tcp -m tcp --dport 8080 -j TSNET-USER$/m);
  assert.match(v4only, /^-I INPUT 1 -j TSNET-PROXY-INPUT$/m);
  assert.doesNotMatch(v4only, /\*nat/, 'nothing else in ip6tables');
  assert.doesNotMatch(planRestore(renderDesired(PROXIED, 4), parseIptablesSave(EMPTY_SAVE))!, /PROXY-INPUT/, 'IPv4 is NAT');
  const els = renderElements(PROXIED);
  assert.deepEqual([...els.get('proxied6')!], ['tcp . 8080']);
  assert.equal(els.get('proxied6addr')!.size, 11);
});

/** What iptables-save would print after applying a plan to an empty ruleset (our chains only). */
function simulateSave(state: FwState, family: 4 | 6, extraUser: string[] = []): string {
  const desired = renderDesired(state, family);
  const out: string[] = [];
  for (const [table, t] of desired) {
    out.push(`*${table}`);
    const builtins = table === 'filter' ? ['INPUT', 'FORWARD', 'OUTPUT'] : ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'];
    for (const b of builtins) out.push(`:${b} ACCEPT [0:0]`);
    const chains = [...t.chains.keys(), ...(t.userChain ? ['TSNET-USER'] : [])].sort();
    for (const c of chains) out.push(`:${c} - [0:0]`);
    for (const h of t.hooks) out.push(`-A ${h.chain} ${h.rule}`);
    for (const c of chains) {
      const rules = c === 'TSNET-USER' ? [...extraUser, '-j RETURN'] : t.chains.get(c)!;
      for (const r of rules) out.push(`-A ${c} ${r}`);
    }
    out.push('COMMIT');
  }
  return `${out.join('\n')}\n`;
}

test('no transaction when the kernel already matches (even with operator rules in TSNET-USER)', () => {
  const saved = parseIptablesSave(simulateSave(STATE, 4, ['-s 192.0.2.1/32 -j DROP']));
  assert.equal(planRestore(renderDesired(STATE, 4), saved), undefined);
});

test('removing a network rewrites our chains and deletes its chain, leaving TSNET-USER alone', () => {
  const saved = parseIptablesSave(simulateSave(STATE, 4, ['-s 192.0.2.1/32 -j DROP']));
  const after: FwState = { networks: STATE.networks.filter((n) => n.name !== 'back') };
  const text = planRestore(renderDesired(after, 4), saved)!;
  golden('remove-network-v4.rules', text);
  assert.doesNotMatch(text, /TSNET-USER/);
  assert.match(text, /^-X TSNET-N-bbbbbbbbbbbb$/m);
});

test('missing or misordered hooks are removed and re-inserted at the top', () => {
  const good = simulateSave(STATE, 4);
  const swapped = good.replace('-A FORWARD -j TSNET-USER\n-A FORWARD -j TSNET-FORWARD', '-A FORWARD -j TSNET-FORWARD\n-A FORWARD -j TSNET-USER');
  const text = planRestore(renderDesired(STATE, 4), parseIptablesSave(swapped))!;
  assert.match(text, /-D FORWARD -j TSNET-FORWARD\n-D FORWARD -j TSNET-USER/);
  assert.match(text, /-I FORWARD 1 -j TSNET-FORWARD\n-I FORWARD 1 -j TSNET-USER\n/);
});

test('no networks of a family: every trace of tsnet in that family goes', () => {
  const saved = parseIptablesSave(simulateSave(STATE, 6));
  const text = planRestore(renderDesired({ networks: [] }, 6), saved)!;
  golden('uninstall-v6.rules', text);
  assert.match(text, /-D FORWARD -j TSNET-USER/);
  assert.match(text, /-X TSNET-FORWARD/);
});

test('the parser reads tables, policies and rules of iptables-save', () => {
  const p = parseIptablesSave(`# Generated\n*filter\n:INPUT DROP [5:300]\n:TSNET-X - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A TSNET-X -m comment --comment "tsnet:a b" -j RETURN\nCOMMIT\n`);
  const f = p.get('filter')!;
  assert.equal(f.chains.get('INPUT'), 'DROP');
  assert.deepEqual(f.rules.get('INPUT'), ['-i lo -j ACCEPT']);
  assert.deepEqual(f.rules.get('TSNET-X'), ['-m comment --comment "tsnet:a b" -j RETURN']);
});

/** What `nft list table inet tsnet` prints for a state (sets then chains), for planner tests. */
function simulateNftList(state: FwState): string {
  const els = renderElements(state);
  const out = ['table inet tsnet {'];
  for (const [name, set] of els) out.push(`\tset ${name} {`, '\t\ttype x', ...(set.size ? [`\t\telements = { ${[...set].join(',\n\t\t\t     ')} }`] : []), '\t}');
  out.push('\tchain user {', '\t}');
  const script = planNft(state, undefined)!;
  for (const chain of chainsFor(state.localhost ?? 'nat').map((c) => c.name)) {
    out.push(`\tchain ${chain} {`, '\t\ttype filter hook forward priority filter; policy accept;');
    for (const l of script.split('\n')) if (l.startsWith(`add rule inet tsnet ${chain} `)) out.push(`\t\t${l.slice(`add rule inet tsnet ${chain} `.length)}`);
    out.push('\t}');
  }
  out.push('}');
  return out.join('\n');
}

test('nftables: first install golden; a matching table needs nothing; one more port is one element', () => {
  golden('nft-install.nft', planNft(PORTS, undefined)!);
  const listed = parseNftTable(simulateNftList(PORTS));
  assert.equal(planNft(PORTS, listed), undefined);
  const more: FwState = { ...PORTS, bindings: [...PORTS.bindings!, { ...PORTS.bindings![0]!, hostPort: 8081, hostPortEnd: 8081 }] };
  assert.equal(planNft(more, listed), 'add element inet tsnet dnat4any { tcp . 8081 : 172.17.0.2 . 80 }\n');
  const fewer: FwState = { ...PORTS, bindings: PORTS.bindings!.slice(1) };
  assert.equal(planNft(fewer, listed), 'delete element inet tsnet dnat4any { tcp . 8080 }\n');
  // A range is one element per port, offsets kept.
  assert.equal([...renderElements(PORTS).get('dnat4any')!].filter((e) => e.includes('172.17.0.3 . 70')).length, 11);
});
