// The nftables ruleset of tsnet, pure. One `inet tsnet` table holds a fixed
// skeleton of rules; everything per network or per published port lives in sets
// and maps. Adding a network or a port is adding set elements, never rules, and
// a packet's cost is a few hash lookups however many mappings exist.
import { compressIpv6, parseIp } from '../../ipam/addr.js';
import type { FwState } from '../backend.js';
import { ifaceText } from '../text.js';

export const TABLE = 'inet tsnet';
export const SKELETON_VERSION = 'tsnet:v2';

export const SETS: ReadonlyArray<{ name: string; kind: 'set' | 'map'; spec: string }> = [
  { name: 'bridges', kind: 'set', spec: 'type ifname;' },
  { name: 'internal', kind: 'set', spec: 'type ifname;' },
  { name: 'icc', kind: 'set', spec: 'type ifname . ifname;' },
  { name: 'subnets4', kind: 'set', spec: 'type ipv4_addr; flags interval;' },
  { name: 'subnets6', kind: 'set', spec: 'type ipv6_addr; flags interval;' },
  { name: 'masq4', kind: 'set', spec: 'type ipv4_addr; flags interval;' },
  { name: 'masq6', kind: 'set', spec: 'type ipv6_addr; flags interval;' },
  { name: 'dnat4', kind: 'map', spec: 'type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;' },
  { name: 'dnat4any', kind: 'map', spec: 'type inet_proto . inet_service : ipv4_addr . inet_service;' },
  { name: 'dnat6', kind: 'map', spec: 'type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;' },
  { name: 'dnat6any', kind: 'map', spec: 'type inet_proto . inet_service : ipv6_addr . inet_service;' },
  // Ports the userland proxy serves without NAT (IPv6 clients of IPv4-only endpoints).
  { name: 'proxied6', kind: 'set', spec: 'type inet_proto . inet_service;' },
  { name: 'proxied6addr', kind: 'set', spec: 'type ipv6_addr . inet_proto . inet_service;' },
];

export interface ChainSpec {
  name: string;
  /** Base chain declaration, as given to `add chain`. */
  hook: string;
  /** Rules as given to `add rule` (the first carries the version comment). */
  rules: string[];
  /** The same rules as `nft list` prints them back. */
  printed: string[];
}

// Locally generated traffic to loopback is the userland proxy's: [::1] always (IPv6 has no
// route_localnet), 127.0.0.0/8 too when the proxy runs.
const dnatRules = (hookChain: string, localhost: 'nat' | 'proxy') => [
  `fib daddr type local ${hookChain === 'output' && localhost === 'proxy' ? 'ip daddr != 127.0.0.0/8 ' : ''}dnat ip to ip daddr . meta l4proto . th dport map @dnat4`,
  `fib daddr type local ${hookChain === 'output' && localhost === 'proxy' ? 'ip daddr != 127.0.0.0/8 ' : ''}dnat ip to meta l4proto . th dport map @dnat4any`,
  `fib daddr type local ${hookChain === 'output' ? 'ip6 daddr != ::1 ' : ''}dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6`,
  `fib daddr type local ${hookChain === 'output' ? 'ip6 daddr != ::1 ' : ''}dnat ip6 to meta l4proto . th dport map @dnat6any`,
].map((r, i) => (i === 0 ? `${r} comment "${SKELETON_VERSION}:${hookChain}"` : r));

function chain(name: string, hook: string, rules: string[]): ChainSpec {
  return { name, hook, rules, printed: rules };
}

/** The fixed rules (two variants: who serves 127.0.0.1). `user` (the operator's chain, like DOCKER-USER) is created empty and never rewritten. */
export const chainsFor = (localhost: 'nat' | 'proxy'): readonly ChainSpec[] => [
  chain('forward', 'type filter hook forward priority filter; policy accept;', [
    `jump user comment "${SKELETON_VERSION}:forward"`,
    'oifname @bridges ct state established,related accept',
    // Same bridge: allowed where icc is on (only seen with br_netfilter; the bridge's
    // port isolation enforces icc=false without it).
    'iifname . oifname @icc accept',
    // Isolation: no traffic between two tsnet bridges.
    'iifname @bridges oifname @bridges drop',
    'iifname @internal drop',
    'iifname @bridges accept',
    // Into a bridge only connections a DNAT map rewrote (published ports); a packet
    // addressed straight to a container's address is dropped.
    'oifname @bridges ct status dnat accept',
    'oifname @bridges drop',
  ]),
  chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', dnatRules('prerouting', localhost)),
  chain('output', 'type nat hook output priority -100; policy accept;', dnatRules('output', localhost)),
  chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', [
    `ip saddr @masq4 oifname != @bridges masquerade comment "${SKELETON_VERSION}:postrouting"`,
    'ip6 saddr @masq6 oifname != @bridges masquerade',
    // Hairpin: DNAT'd traffic from a container back into a bridge is answered through the
    // host. Not the host's own addresses (the gateway): they need no SNAT, and a NAT'd
    // source port collides with the container's TIME_WAIT sockets.
    'ct status dnat oifname @bridges ip saddr @subnets4 fib saddr type != local masquerade',
    'ct status dnat oifname @bridges ip6 saddr @subnets6 fib saddr type != local masquerade',
    // 127.0.0.1 access to published ports by NAT, without the proxy (route_localnet is on for our bridges).
    ...(localhost === 'nat' ? ['ip saddr 127.0.0.0/8 oifname @bridges masquerade'] : []),
  ]),
  // Proxied ports end on INPUT, not FORWARD: the operator's chain sees them there.
  chain('input', 'type filter hook input priority filter; policy accept;', [
    `meta nfproto ipv6 meta l4proto . th dport @proxied6 jump user comment "${SKELETON_VERSION}:input"`,
    'ip6 daddr . meta l4proto . th dport @proxied6addr jump user',
  ]),
  // Loopback addresses arriving on any interface but lo are dropped before NAT.
  chain('raw', 'type filter hook prerouting priority raw; policy accept;', [
    `ip daddr 127.0.0.0/8 iifname != "lo" drop comment "${SKELETON_VERSION}:raw"`,
  ]),
];

const q = (s: string) => `"${ifaceText(s)}"`;
const v6 = (ip: string) => compressIpv6(parseIp(ip).value);

/** Every element tsnet wants, per set/map, in the text form `nft list` prints. */
export function renderElements(state: FwState): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>(SETS.map((s) => [s.name, new Set<string>()]));
  const add = (set: string, el: string) => out.get(set)!.add(el);
  const nets = new Map(state.networks.map((n) => [n.id, n]));
  for (const n of state.networks) {
    add('bridges', q(n.bridge));
    if (n.internal) add('internal', q(n.bridge));
    if (n.icc) add('icc', `${q(n.bridge)} . ${q(n.bridge)}`);
    for (const s of n.subnets) {
      const cidr = s.family === 6 ? `${v6(s.cidr.split('/')[0]!)}/${s.cidr.split('/')[1]}` : s.cidr;
      add(s.family === 4 ? 'subnets4' : 'subnets6', cidr);
      if (n.masquerade && !n.internal) add(s.family === 4 ? 'masq4' : 'masq6', cidr);
    }
  }
  for (const b of state.bindings ?? []) {
    if (!nets.has(b.networkId)) continue;
    const cip = b.family === 6 ? v6(b.containerIP) : b.containerIP;
    const hip = b.hostIP && b.family === 6 ? v6(b.hostIP) : b.hostIP;
    const map = `dnat${b.family}${b.hostIP ? '' : 'any'}`;
    // A range becomes one element per port: offsets are kept exactly, lookups stay O(1).
    for (let i = 0; i <= b.hostPortEnd - b.hostPort; i++) {
      const cport = b.containerPortEnd === b.containerPort ? b.containerPort : b.containerPort + i;
      const key = `${hip ? `${hip} . ` : ''}${b.proto} . ${b.hostPort + i}`;
      add(map, `${key} : ${cip} . ${cport}`);
    }
  }
  for (const p of state.proxied ?? []) {
    for (let port = p.port; port <= p.portEnd; port++) {
      if (p.hostIP) add('proxied6addr', `${v6(p.hostIP)} . ${p.proto} . ${port}`);
      else add('proxied6', `${p.proto} . ${port}`);
    }
  }
  return out;
}

/** The key part of an element (what `delete element` takes for a map). */
export const elementKey = (set: string, el: string) => (SETS.find((s) => s.name === set)?.kind === 'map' ? el.split(' : ')[0]! : el);

/**
 * The one `nft -f -` transaction that turns what is listed into what is wanted, or
 * undefined when they agree. Declarations are idempotent (`add`); a chain whose
 * rules differ is flushed and rewritten; set and map elements change one by one.
 */
export function planNft(state: FwState, listed: { elements: Map<string, Set<string>>; chains: Map<string, string[]> } | undefined): string | undefined {
  const want = renderElements(state);
  const lines: string[] = [];
  const fresh = !listed;
  if (fresh) {
    lines.push(`add table ${TABLE}`);
    for (const s of SETS) lines.push(`add ${s.kind} ${TABLE} ${s.name} { ${s.spec} }`);
    lines.push(`add chain ${TABLE} user`);
  } else {
    for (const s of SETS) if (!listed.elements.has(s.name)) lines.push(`add ${s.kind} ${TABLE} ${s.name} { ${s.spec} }`);
    if (!listed.chains.has('user')) lines.push(`add chain ${TABLE} user`);
  }
  for (const c of chainsFor(state.localhost ?? 'nat')) {
    const have = listed?.chains.get(c.name);
    if (have && have.length === c.printed.length && have.every((r, i) => r === c.printed[i])) continue;
    lines.push(`add chain ${TABLE} ${c.name} { ${c.hook} }`, `flush chain ${TABLE} ${c.name}`);
    for (const r of c.rules) lines.push(`add rule ${TABLE} ${c.name} ${r}`);
  }
  for (const s of SETS) {
    const have = listed?.elements.get(s.name) ?? new Set<string>();
    const wanted = want.get(s.name)!;
    const stale = [...have].filter((e) => !wanted.has(e));
    const missing = [...wanted].filter((e) => !have.has(e));
    if (stale.length) lines.push(`delete element ${TABLE} ${s.name} { ${stale.map((e) => elementKey(s.name, e)).join(', ')} }`);
    if (missing.length) lines.push(`add element ${TABLE} ${s.name} { ${missing.join(', ')} }`);
  }
  return lines.length ? `${lines.join('\n')}\n` : undefined;
}

/** What `nft list` shows after a successful plan for `state` (used when the kernel is known to hold it). */
export function listedFrom(state: FwState): { elements: Map<string, Set<string>>; chains: Map<string, string[]> } {
  return { elements: renderElements(state), chains: new Map([['user', []], ...chainsFor(state.localhost ?? 'nat').map((c) => [c.name, c.printed] as [string, string[]])]) };
}
