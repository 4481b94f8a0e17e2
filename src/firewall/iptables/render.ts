// Pure rendering of tsnet's iptables rules, and the pure planning of the one
// iptables-restore transaction that takes the kernel from what iptables-save
// shows to what we want. Rule text is written in the canonical form iptables-save
// prints, so that "what is there" and "what we want" compare as plain strings.
import type { Family } from '../../system/kernel.js';
import type { FwBinding, FwNetwork, FwState } from '../backend.js';
import type { SavedRuleset } from './parse.js';
import { CONTROLLER, jumpsToOwned, ownsChain } from '../ownership.js';
import { ifaceText, iptComment } from '../text.js';

export const CHAIN = {
  USER: 'TSNET-USER',
  FORWARD: 'TSNET-FORWARD',
  ISO1: 'TSNET-ISOLATION-1',
  ISO2: 'TSNET-ISOLATION-2',
  POSTROUTING: 'TSNET-POSTROUTING',
  DNAT: 'TSNET-DNAT',
  RAW: 'TSNET-RAW',
  PROXY_INPUT: 'TSNET-PROXY-INPUT',
} as const;

export const networkChain = (id: string) => `TSNET-N-${id.slice(0, 12)}`;
const comment = (n: FwNetwork) => iptComment(`tsnet:${n.name}`);

export interface DesiredTable {
  /** tsnet-owned chains (TSNET-USER excluded) and their rules in order. */
  chains: Map<string, string[]>;
  /** Jumps from built-in chains, in the order they must appear. */
  hooks: Array<{ chain: string; rule: string }>;
  /** Whether TSNET-USER must exist in this table. */
  userChain: boolean;
}

export type DesiredRuleset = Map<'filter' | 'nat' | 'raw', DesiredTable>;

const portText = (a: number, b: number, sep: string) => (a === b ? String(a) : `${a}${sep}${b}`);
const hostText = (ip: string, family: Family) => (family === 6 ? `[${ip}]` : ip);

/** The DNAT rule of one binding, in iptables-save's canonical order. */
export function renderDnat(b: FwBinding): string {
  const dst = b.hostIP ? `-d ${b.hostIP}/${b.family === 4 ? 32 : 128} ` : '';
  let to = `${hostText(b.containerIP, b.family)}:${portText(b.containerPort, b.containerPortEnd, '-')}`;
  // A range published at other host ports keeps offsets with the base-port form (CIP:80-90/8000).
  if (b.containerPortEnd !== b.containerPort && b.hostPort !== b.containerPort) to += `/${b.hostPort}`;
  return `${dst}-p ${b.proto} -m ${b.proto} --dport ${portText(b.hostPort, b.hostPortEnd, ':')} ${iptComment(`tsnet:${b.network}:${b.endpointId.slice(0, 12)}`)} -j DNAT --to-destination ${to}`;
}

/** What tsnet wants in one address family's tables. */
export function renderDesired(state: FwState, family: Family): DesiredRuleset {
  const nets = state.networks
    .map((n) => ({ ...n, subnets: n.subnets.filter((s) => s.family === family) }))
    .filter((n) => n.subnets.length > 0)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const known = new Set(nets.map((n) => n.id));
  const bindings = (state.bindings ?? [])
    .filter((b) => b.family === family && known.has(b.networkId))
    .sort((a, b) => a.proto.localeCompare(b.proto) || a.hostPort - b.hostPort || a.hostIP.localeCompare(b.hostIP) || a.endpointId.localeCompare(b.endpointId));
  const published = new Set(bindings.map((b) => b.networkId));
  const out: DesiredRuleset = new Map();
  // Proxied ports (IPv6 clients of IPv4-only endpoints end on INPUT): the operator's chain sees them too.
  const proxied = (state.proxied ?? [])
    .filter((p) => p.family === family)
    .sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port || a.hostIP.localeCompare(b.hostIP));
  const proxyRules = proxied.map((p) => `${p.hostIP ? `-d ${p.hostIP}/${family === 4 ? 32 : 128} ` : ''}-p ${p.proto} -m ${p.proto} --dport ${portText(p.port, p.portEnd, ':')} -j ${CHAIN.USER}`);
  const proxyHook = { chain: 'INPUT', rule: `-j ${CHAIN.PROXY_INPUT}` };
  if (!nets.length) {
    for (const t of ['filter', 'nat', 'raw'] as const) out.set(t, { chains: new Map(), hooks: [], userChain: false });
    // An IPv4-only host still has IPv6 clients of its proxied ports.
    if (proxyRules.length) out.set('filter', { chains: new Map([[CHAIN.PROXY_INPUT, proxyRules]]), hooks: [proxyHook], userChain: true });
    return out;
  }

  const filter = new Map<string, string[]>();
  const fwd: string[] = [`-j ${CHAIN.ISO1}`];
  const iso1: string[] = [];
  const iso2: string[] = [];
  for (const n of nets) {
    const br = ifaceText(n.bridge);
    const ch = networkChain(n.id);
    fwd.push(`-o ${br} ${comment(n)} -j ${ch}`, `-i ${br} ${comment(n)} -j ${ch}`);
    iso1.push(`-i ${br} ! -o ${br} -j ${CHAIN.ISO2}`);
    iso2.push(`-o ${br} -j DROP`);
    const rules: string[] = [];
    if (n.internal) {
      rules.push(`-i ${br} -o ${br} -j ${n.icc ? 'ACCEPT' : 'DROP'}`, `-i ${br} -j DROP`, `-o ${br} -j DROP`);
    } else {
      rules.push(
        `-o ${br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
        `-i ${br} -o ${br} -j ${n.icc ? 'ACCEPT' : 'DROP'}`,
        `-i ${br} ! -o ${br} -j ACCEPT`,
      );
      // Published ports: only connections our DNAT rules rewrote get in, so a packet
      // addressed straight to a container's address is still dropped below.
      if (published.has(n.id)) rules.push(`-o ${br} -m conntrack --ctstate DNAT -j ACCEPT`);
      // New connections from anywhere else to the containers are not forwarded.
      rules.push(`-o ${br} -j DROP`);
    }
    filter.set(ch, rules);
  }
  iso1.push('-j RETURN');
  iso2.push('-j RETURN');
  filter.set(CHAIN.FORWARD, fwd);
  filter.set(CHAIN.ISO1, iso1);
  filter.set(CHAIN.ISO2, iso2);

  const post: string[] = [];
  for (const n of nets) {
    if (n.internal) continue;
    if (n.masquerade) for (const s of n.subnets) post.push(`-s ${s.cidr} ! -o ${n.bridge} ${comment(n)} -j MASQUERADE`);
    if (published.has(n.id)) {
      // Hairpin: a container reaching a published port (its own or a neighbour's) through
      // a host address is answered through the host, not directly. Only containers: the
      // host's own addresses (the gateway) need no SNAT, and a NAT'd source port collides
      // with the container's TIME_WAIT sockets (see bench/RESULTS.md, local paths).
      for (const s of n.subnets) post.push(`-s ${s.cidr} -o ${n.bridge} -m addrtype ! --src-type LOCAL -m conntrack --ctstate DNAT ${comment(n)} -j MASQUERADE`);
      // Access through 127.0.0.1 by NAT (without the userland proxy; route_localnet is on for our bridges).
      if (family === 4 && state.localhost !== 'proxy') post.push(`-s 127.0.0.0/8 -o ${n.bridge} ${comment(n)} -j MASQUERADE`);
    }
  }
  const nat = new Map<string, string[]>([[CHAIN.POSTROUTING, post]]);
  nat.set(CHAIN.DNAT, bindings.map(renderDnat));

  const hooks = [
    { chain: 'FORWARD', rule: `-j ${CHAIN.USER}` },
    { chain: 'FORWARD', rule: `-j ${CHAIN.FORWARD}` },
  ];
  if (proxyRules.length) {
    filter.set(CHAIN.PROXY_INPUT, proxyRules);
    hooks.push(proxyHook);
  }
  out.set('filter', { chains: filter, userChain: true, hooks });
  out.set('nat', {
    chains: nat,
    userChain: false,
    hooks: [
      { chain: 'PREROUTING', rule: `-m addrtype --dst-type LOCAL -j ${CHAIN.DNAT}` },
      // Loopback is the userland proxy's (IPv6 has no route_localnet; IPv4 too when the proxy runs).
      {
        chain: 'OUTPUT',
        rule: family === 6 ? `! -d ::1/128 -m addrtype --dst-type LOCAL -j ${CHAIN.DNAT}` : state.localhost === 'proxy' ? `! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j ${CHAIN.DNAT}` : `-m addrtype --dst-type LOCAL -j ${CHAIN.DNAT}`,
      },
      { chain: 'POSTROUTING', rule: `-j ${CHAIN.POSTROUTING}` },
    ],
  });
  // route_localnet lets 127.0.0.1 reach published ports; loopback addresses arriving
  // on any other interface are dropped before NAT, so no other host (and no container)
  // can reach a port published on 127.0.0.1 or a service bound to loopback.
  out.set('raw', {
    chains: new Map(family === 4 ? [[CHAIN.RAW, [`-d 127.0.0.0/8 ! -i lo -j DROP`]]] : []),
    userChain: false,
    hooks: family === 4 ? [{ chain: 'PREROUTING', rule: `-j ${CHAIN.RAW}` }] : [],
  });
  return out;
}

// Only the controller's own chains: the CNI plugins' TSNET-CNI-* chains share the host.
const isOurs = (chain: string) => ownsChain(CONTROLLER, chain);
const isOurJump = (rule: string) => jumpsToOwned(CONTROLLER, rule);

function hooksInPlace(desired: DesiredTable, saved: SavedRuleset extends Map<string, infer T> ? T | undefined : never): boolean {
  const byChain = new Map<string, string[]>();
  for (const h of desired.hooks) byChain.set(h.chain, [...(byChain.get(h.chain) ?? []), h.rule]);
  for (const [chain, want] of byChain) {
    const have = (saved?.rules.get(chain) ?? []).filter(isOurJump);
    if (have.length !== want.length || have.some((r, i) => r !== want[i])) return false;
  }
  // Jumps of ours in built-in chains that we no longer want.
  for (const [chain, rules] of saved?.rules ?? []) {
    if (isOurs(chain) || byChain.has(chain)) continue;
    if (rules.some(isOurJump)) return false;
  }
  return true;
}

/**
 * The iptables-restore --noflush input that turns `saved` into `desired`, or
 * undefined when they already agree. Declaring a user chain in --noflush mode
 * flushes it, so each owned chain is rewritten whole; TSNET-USER (the operator's)
 * is only ever created, never flushed.
 */
export function planRestore(desired: DesiredRuleset, saved: SavedRuleset): string | undefined {
  const blocks: string[] = [];
  for (const [table, want] of desired) {
    const have = saved.get(table);
    const haveChains = have?.chains ?? new Map<string, string>();
    const stale = [...haveChains.keys()].filter((c) => isOurs(c) && c !== CHAIN.USER && !want.chains.has(c)).sort();
    const chainsDiffer = [...want.chains].some(([c, rules]) => {
      if (!haveChains.has(c)) return true;
      const got = have?.rules.get(c) ?? [];
      return got.length !== rules.length || got.some((r, i) => r !== rules[i]);
    });
    const needUser = want.userChain && !haveChains.has(CHAIN.USER);
    const hooksOk = hooksInPlace(want, have);
    if (!stale.length && !chainsDiffer && !needUser && hooksOk) continue;

    const lines: string[] = [`*${table}`];
    for (const c of [...want.chains.keys()].sort()) lines.push(`:${c} - [0:0]`);
    for (const c of stale) lines.push(`:${c} - [0:0]`);
    if (needUser) lines.push(`:${CHAIN.USER} - [0:0]`);
    if (!hooksOk) {
      // Remove every jump of ours from built-in chains, then insert the wanted ones at the top.
      for (const [chain, rules] of have?.rules ?? []) {
        if (isOurs(chain)) continue;
        for (const r of rules.filter(isOurJump)) lines.push(`-D ${chain} ${r}`);
      }
    }
    for (const [c, rules] of [...want.chains].sort(([a], [b]) => (a < b ? -1 : 1))) {
      for (const r of rules) lines.push(`-A ${c} ${r}`);
    }
    if (needUser) lines.push(`-A ${CHAIN.USER} -j RETURN`);
    if (!hooksOk) {
      for (const h of [...want.hooks].reverse()) lines.push(`-I ${h.chain} 1 ${h.rule}`);
    }
    for (const c of stale) lines.push(`-X ${c}`);
    lines.push('COMMIT');
    blocks.push(lines.join('\n'));
  }
  return blocks.length ? `${blocks.join('\n')}\n` : undefined;
}

/** What iptables-save shows after a successful plan for `desired` (used when the kernel is known to hold it). */
export function savedFrom(desired: DesiredRuleset): SavedRuleset {
  const out: SavedRuleset = new Map();
  for (const [table, t] of desired) {
    const chains = new Map<string, string>();
    const rules = new Map<string, string[]>();
    for (const [c, r] of t.chains) {
      chains.set(c, '-');
      rules.set(c, [...r]);
    }
    if (t.userChain) chains.set(CHAIN.USER, '-');
    for (const h of t.hooks) rules.set(h.chain, [...(rules.get(h.chain) ?? []), h.rule]);
    out.set(table, { chains, rules });
  }
  return out;
}
