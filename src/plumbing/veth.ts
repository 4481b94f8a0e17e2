// A veth pair from a bridge into a namespace, configured all the way: the one
// recipe the bridge driver, the tsnet-bridge CNI plugin and (next) the runtime use.
// The namespace end is born inside the namespace under its final name and MAC, so
// nothing else in that namespace ever sees a temporary name.
import type { Family, Kernel, LinkInfo, NetlinkHandle } from '../system/kernel.js';
import { ConflictError, SyscallError } from '../errors.js';
import { setLoopback } from './iface.js';
import { ensureAddresses, setPortVlans, type IfAddress, type PortVlans } from './bridge.js';

export interface RouteSpec {
  family: Family;
  /** Destination network address; undefined with dstLen 0 (or omitted) is the default route. */
  dst?: string;
  dstLen?: number;
  gateway?: string;
}

export interface VethPlug {
  /** Host end (in our namespace) and the bridge it joins. */
  hostName: string;
  master: number;
  alias?: string;
  /** Namespace end: its name inside the namespace behind nsFd, and its MAC (kernel's choice when undefined). */
  peerName: string;
  nsFd: number;
  peerMac?: string;
  mtu?: number;
  /** Words the namespace in errors ("sandbox web", "/var/run/netns/x"). */
  where: string;
  /** Bridge port flags of the host end. */
  hairpin?: boolean;
  isolated?: boolean;
  vlans?: PortVlans;
  /** IPv6 duplicate address detection on the namespace end (undefined: the kernel's default). */
  dad?: boolean;
  /** Bring lo up in the namespace too. */
  loopbackUp?: boolean;
  addresses: readonly IfAddress[];
  /** Added as given (an existing identical route is an error, as in the reference plugins). */
  routes?: readonly RouteSpec[];
  /** Default routes through these gateways, each only when its family has no default route yet. */
  defaultGateways?: ReadonlyArray<{ family: Family; gateway: string }>;
}

/**
 * Creates and configures the pair. A stale host end of the same name (an
 * interrupted attempt) is replaced. On failure the caller removes the pair with
 * unplugVeth(hostName): deleting the host end takes the namespace end along.
 */
export async function plugVeth(sys: Kernel, p: VethPlug): Promise<{ host: LinkInfo; peer: LinkInfo }> {
  const host = sys.netlink();
  let inner: NetlinkHandle | undefined;
  try {
    const stale = await host.getLinkByName(p.hostName);
    if (stale) await host.deleteLink(stale.index);
    let veth: LinkInfo;
    try {
      veth = await host.createVeth({ name: p.hostName, peerName: p.peerName, peerNetnsFd: p.nsFd, mtu: p.mtu, peerMac: p.peerMac, master: p.master, alias: p.alias });
    } catch (err) {
      // The host name was just cleared, so the clash is inside the namespace.
      if (err instanceof SyscallError && err.errno === 'EEXIST') throw new ConflictError(`${p.where} already has an interface named ${p.peerName}`, { cause: err });
      throw err;
    }
    if (p.hairpin || p.isolated) await host.setBridgePort(veth.index, { hairpin: p.hairpin || undefined, isolated: p.isolated || undefined });
    await setPortVlans(host, veth.index, p.vlans);
    await host.setLinkUp(veth.index);

    inner = sys.netlink(p.nsFd);
    if (p.loopbackUp) await setLoopback(inner, true);
    const peer = await inner.getLinkByName(p.peerName);
    if (!peer) throw new SyscallError('netlink', 'ENODEV', `interface ${p.peerName} did not appear in ${p.where}`);
    if (p.dad !== undefined) {
      // Absent without IPv6 (disabled, or no such key on this kernel): nothing to set.
      const key = `net/ipv6/conf/${p.peerName}/accept_dad`;
      if (sys.sysctl.get(key, p.nsFd) !== undefined) sys.sysctl.set(key, p.dad ? '1' : '0', p.nsFd);
    }
    await ensureAddresses(inner, peer.index, p.addresses);
    await inner.setLinkUp(peer.index);
    for (const r of p.routes ?? []) {
      await inner.addRoute({ family: r.family, dst: r.dstLen ? r.dst : undefined, dstLen: r.dstLen ?? 0, gateway: r.gateway, oif: peer.index });
    }
    for (const g of p.defaultGateways ?? []) await ensureDefaultRoute(inner, g.family, [{ index: peer.index, gateway: g.gateway }]);
    return { host: veth, peer: { ...peer, up: true } };
  } finally {
    host.close();
    inner?.close();
  }
}

/**
 * Gives the family a default route through the first candidate whose interface
 * exists, unless it has one already. Returns the gateway chosen, or undefined.
 * (Docker's gateway election for multi-homed containers: the caller orders the candidates.)
 */
export async function ensureDefaultRoute(
  nl: NetlinkHandle,
  family: Family,
  candidates: ReadonlyArray<{ gateway: string; index?: number; ifname?: string }>,
): Promise<string | undefined> {
  if (!candidates.length) return undefined;
  if ((await nl.listRoutes(family)).some((r) => r.dstLen === 0)) return undefined;
  for (const c of candidates) {
    const index = c.index ?? (c.ifname !== undefined ? (await nl.getLinkByName(c.ifname))?.index : undefined);
    if (index === undefined) continue;
    await nl.addRoute({ family, gateway: c.gateway, oif: index });
    return c.gateway;
  }
  return undefined;
}

/**
 * Removes a pair by its host end (which takes the namespace end along). When the
 * host end is gone but the namespace end survived (moved or renamed by hand), the
 * namespace end goes too, if it is a veth with the MAC we gave it.
 */
export async function unplugVeth(sys: Kernel, hostName: string | undefined, inNamespace?: { nsFd: number; name: string; mac?: string }): Promise<void> {
  if (hostName !== undefined) {
    const host = sys.netlink();
    try {
      const link = await host.getLinkByName(hostName);
      if (link) await host.deleteLink(link.index);
    } finally {
      host.close();
    }
  }
  if (!inNamespace?.mac) return;
  const inner = sys.netlink(inNamespace.nsFd);
  try {
    const peer = await inner.getLinkByName(inNamespace.name);
    if (peer && peer.kind === 'veth' && peer.mac === inNamespace.mac) await inner.deleteLink(peer.index);
  } finally {
    inner.close();
  }
}
