// IPAM: subnet selection and address allocation. Pure functions over plain
// records, so the same code serves the CLI, the CNI IPAM plugin and unit tests.
import { ConflictError, ExhaustedError, InvalidConfigError, UnsupportedError } from '../errors.js';
import {
  cidrContains, cidrLast, cidrOverlaps, cidrWithin, formatCidr, formatIp, parseCidr, parseIp, type Cidr, type IpAddr,
} from './addr.js';
import { candidateSubnets, DEFAULT_POOLS, type PoolSpec } from './pools.js';
import type { Family } from '../system/kernel.js';

export interface SubnetState {
  subnet: string;
  gateway?: string;
  ipRange?: string;
  auxAddresses: Record<string, string>;
  /** address -> owner: 'gateway', 'aux:NAME' or an endpoint id. */
  used: Record<string, string>;
  /** The last dynamically handed out address; allocation continues after it (Docker's serial order). */
  last?: string;
}

export interface IpamRequest {
  subnets: string[];
  gateways: string[];
  ipRanges: string[];
  auxAddresses: Record<string, string>;
  ipv6: boolean;
}

export interface IpamContext {
  /** Subnets of other tsnet networks, with their names for error messages. */
  taken: Array<{ cidr: Cidr; network: string }>;
  /** Destinations of the host's routes (default routes excluded). */
  hostRoutes: Cidr[];
  /** 5 random bytes used to derive a ULA /64 when IPv6 is on and no v6 subnet is given. */
  ulaSeed: Uint8Array;
  pools?: readonly PoolSpec[];
}

const familyName = (f: Family) => (f === 4 ? 'IPv4' : 'IPv6');

/** The span of addresses that may be handed out in a subnet (not network/broadcast). */
function usableSpan(c: Cidr): { first: bigint; last: bigint } {
  return c.family === 4 ? { first: c.network + 1n, last: cidrLast(c) - 1n } : { first: c.network + 1n, last: cidrLast(c) };
}

function checkOverlaps(c: Cidr, ctx: IpamContext): void {
  const clash = ctx.taken.find((t) => cidrOverlaps(t.cidr, c));
  if (clash) throw new ConflictError(`subnet ${formatCidr(c)} overlaps with subnet ${formatCidr(clash.cidr)} of network ${clash.network}`);
}

/** Decides the subnets of a new network: validates what was asked, fills in defaults. */
export function planIpam(req: IpamRequest, ctx: IpamContext): SubnetState[] {
  const subnets: Cidr[] = req.subnets.map((s) => parseCidr(s, { strict: true, what: 'subnet' }));
  for (const s of subnets) {
    if ((s.family === 4 && s.prefixLen > 30) || (s.family === 6 && s.prefixLen > 126)) {
      throw new InvalidConfigError(`subnet ${formatCidr(s)} is too small: it leaves no address for an endpoint besides the gateway`);
    }
  }
  // As Docker's bridge driver: one subnet per family (a second would be accepted and never used).
  for (const f of [4, 6] as const) {
    const of = subnets.filter((x) => x.family === f);
    if (of.length > 1) throw new UnsupportedError(`the bridge driver doesn't support multiple ${familyName(f)} subnets (${of.map(formatCidr).join(', ')})`);
  }
  if (!subnets.length && (req.gateways.length || req.ipRanges.length || Object.keys(req.auxAddresses).length)) {
    throw new InvalidConfigError('--gateway, --ip-range and --aux-address need a --subnet to belong to');
  }
  for (const s of subnets) checkOverlaps(s, ctx);

  const states: SubnetState[] = subnets.map((s) => ({ subnet: formatCidr(s), auxAddresses: {}, used: {} }));

  // Gateways, ranges and aux addresses belong to the subnet that contains them.
  const owner = (ip: IpAddr | Cidr, what: string, text: string): SubnetState => {
    const idx = subnets.findIndex((s) => ('value' in ip ? cidrContains(s, ip) : cidrWithin(ip, s)));
    if (idx < 0) throw new InvalidConfigError(`${what} ${text} is not inside any subnet of the network (${states.map((s) => s.subnet).join(', ')})`);
    return states[idx]!;
  };
  for (const g of req.gateways) {
    const ip = parseIp(g, 'gateway');
    const st = owner(ip, 'gateway', g);
    if (st.gateway) throw new InvalidConfigError(`subnet ${st.subnet} has two gateways (${st.gateway}, ${g})`);
    const span = usableSpan(parseCidr(st.subnet));
    if (ip.value < span.first || ip.value > span.last) throw new InvalidConfigError(`gateway ${g} is the network or broadcast address of ${st.subnet}`);
    st.gateway = formatIp(ip);
  }
  for (const r of req.ipRanges) {
    const c = parseCidr(r, { strict: true, what: 'ip-range' });
    const st = owner(c, 'ip-range', r);
    if (st.ipRange) throw new InvalidConfigError(`subnet ${st.subnet} has two ip-ranges`);
    st.ipRange = formatCidr(c);
  }
  for (const [name, addr] of Object.entries(req.auxAddresses)) {
    const ip = parseIp(addr, `aux-address ${name}`);
    const st = owner(ip, 'aux-address', `${name}=${addr}`);
    st.auxAddresses[name] = formatIp(ip);
  }

  // Defaults: an IPv4 subnet from the pools, an IPv6 ULA /64 when IPv6 is on.
  if (!subnets.some((s) => s.family === 4)) {
    const pick = pickPoolSubnet(ctx);
    states.unshift({ subnet: formatCidr(pick), auxAddresses: {}, used: {} });
    subnets.unshift(pick);
  }
  if (req.ipv6 && !subnets.some((s) => s.family === 6)) {
    const b = ctx.ulaSeed;
    let v = 0xfdn;
    for (let i = 0; i < 5; i++) v = (v << 8n) | BigInt(b[i] ?? 0);
    const ula: Cidr = { family: 6, network: v << 80n, prefixLen: 64 };
    checkOverlaps(ula, ctx);
    states.push({ subnet: formatCidr(ula), auxAddresses: {}, used: {} });
    subnets.push(ula);
  }

  for (let i = 0; i < states.length; i++) {
    const st = states[i]!;
    const c = subnets[i]!;
    st.gateway ??= formatIp({ family: c.family, value: c.network + 1n });
    st.used[st.gateway] = 'gateway';
    for (const [name, a] of Object.entries(st.auxAddresses)) {
      if (st.used[a]) throw new InvalidConfigError(`aux-address ${name}=${a} collides with the ${st.used[a]} address`);
      st.used[a] = `aux:${name}`;
    }
  }
  return states;
}

function pickPoolSubnet(ctx: IpamContext): Cidr {
  for (const cand of candidateSubnets(ctx.pools ?? DEFAULT_POOLS)) {
    if (ctx.taken.some((t) => cidrOverlaps(t.cidr, cand))) continue;
    if (ctx.hostRoutes.some((r) => cidrOverlaps(r, cand))) continue;
    return cand;
  }
  throw new ExhaustedError('all predefined address pools have been fully subnetted: give a --subnet');
}

/**
 * Hands out an address in one of the subnets of the given family: the requested
 * one (static), or the next free one after the last handed out, wrapping.
 * Returns the subnet state it came from (mutated) and the address.
 */
export function allocateAddress(
  subnets: SubnetState[],
  family: Family,
  owner: string,
  network: string,
  requested?: string,
): { subnet: SubnetState; address: string } {
  const ofFamily = subnets.filter((s) => parseCidr(s.subnet).family === family);
  if (!ofFamily.length) throw new InvalidConfigError(`network ${network} has no ${familyName(family)} subnet`);
  if (requested !== undefined) {
    const ip = parseIp(requested, `${familyName(family)} address`);
    if (ip.family !== family) throw new InvalidConfigError(`${requested} is not an ${familyName(family)} address`);
    const st = ofFamily.find((s) => cidrContains(parseCidr(s.subnet), ip));
    if (!st) throw new InvalidConfigError(`address ${requested} is not in any subnet of network ${network} (${ofFamily.map((s) => s.subnet).join(', ')})`);
    const span = usableSpan(parseCidr(st.subnet));
    if (ip.value < span.first || ip.value > span.last) throw new InvalidConfigError(`address ${requested} is the network or broadcast address of ${st.subnet}`);
    const text = formatIp(ip);
    const holder = st.used[text];
    if (holder) throw new ConflictError(`address ${text} is already in use on network ${network}${holder === 'gateway' ? ' (it is the gateway)' : ''}`);
    st.used[text] = owner;
    return { subnet: st, address: text };
  }
  for (const st of ofFamily) {
    const c = parseCidr(st.subnet);
    let { first, last } = usableSpan(c);
    if (st.ipRange) {
      const r = parseCidr(st.ipRange);
      first = first > r.network ? first : r.network;
      last = last < cidrLast(r) ? last : cidrLast(r);
    }
    const prev = st.last ? parseIp(st.last).value : first - 1n;
    let start = prev + 1n;
    if (start < first || start > last) start = first;
    const total = last - first + 1n;
    let cand = start;
    // Used addresses are few compared with the span: the scan ends at the first gap.
    const limit = BigInt(Object.keys(st.used).length) + 1n;
    for (let i = 0n; i < total && i <= limit; i++) {
      const text = formatIp({ family, value: cand });
      if (!st.used[text]) {
        st.used[text] = owner;
        st.last = text;
        return { subnet: st, address: text };
      }
      cand = cand === last ? first : cand + 1n;
    }
  }
  // Name what the user gave: the --ip-range that is full, or the subnet.
  const where = ofFamily.map((s) => (s.ipRange ? `--ip-range ${s.ipRange} of subnet ${s.subnet}` : `subnet ${s.subnet}`)).join(', ');
  throw new ExhaustedError(`no free ${familyName(family)} address left in network ${network} (${where})`);
}

/** Releases every address held by owner; returns how many were freed. */
export function releaseAddresses(subnets: SubnetState[], owner: string): number {
  let n = 0;
  for (const st of subnets) {
    for (const [ip, who] of Object.entries(st.used)) {
      if (who === owner) {
        delete st.used[ip];
        n++;
      }
    }
  }
  return n;
}

export function prefixLenOf(subnet: string): number {
  return parseCidr(subnet).prefixLen;
}
