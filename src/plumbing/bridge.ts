// A Linux bridge and its addresses and VLANs, as the bridge driver and the
// tsnet-bridge CNI plugin both need them (one recipe, so the two cannot drift).
import type { BridgeSpec, Family, LinkInfo, NetlinkHandle } from '../system/kernel.js';
import { parseCidr } from '../ipam/addr.js';
import { ConflictError, SyscallError } from '../errors.js';

export interface IfAddress {
  family: Family;
  address: string;
  prefixLen: number;
}

/** '10.0.0.2/24' → the address as written and its prefix (the host bits stay). */
export function ifAddress(cidr: string): IfAddress {
  const c = parseCidr(cidr, { what: 'address' });
  return { family: c.family, address: cidr.trim().split('/')[0]!, prefixLen: c.prefixLen };
}

export interface EnsureBridgeOptions {
  /** Create it when missing (false: a missing bridge is an error the caller words). */
  create: boolean;
  /** Bring an existing bridge's MTU to spec.mtu (only for bridges we own). */
  enforceMtu?: boolean;
  promisc?: boolean;
}

/**
 * The bridge named in spec, created when missing. A link of that name that is not
 * a bridge is a ConflictError; a parallel creator winning the race is not an error.
 * Returns undefined only when it is missing and create is false.
 */
export async function ensureBridgeDevice(nl: NetlinkHandle, spec: BridgeSpec, opts: EnsureBridgeOptions): Promise<LinkInfo | undefined> {
  let br = await nl.getLinkByName(spec.name);
  if (br && br.kind !== 'bridge') throw new ConflictError(`${spec.name} exists and is not a bridge (${br.kind ?? 'unknown kind'})`);
  if (!br) {
    if (!opts.create) return undefined;
    try {
      br = await nl.createBridge(spec);
    } catch (err) {
      br = await nl.getLinkByName(spec.name); // made by a parallel caller?
      if (!br || br.kind !== 'bridge') throw err;
    }
  } else if (opts.enforceMtu && spec.mtu !== undefined && br.mtu !== spec.mtu) {
    await nl.setMtu(br.index, spec.mtu);
  }
  if (opts.promisc) await nl.setPromisc(br.index, true);
  if (!br.up) await nl.setLinkUp(br.index);
  return { ...br, up: true, mtu: opts.enforceMtu && spec.mtu !== undefined ? spec.mtu : br.mtu };
}

/** Adds the addresses the link lacks (one dump; an address added meanwhile is no error). */
export async function ensureAddresses(nl: NetlinkHandle, index: number, addrs: readonly IfAddress[]): Promise<void> {
  if (!addrs.length) return;
  const have = (await nl.listAddresses()).filter((a) => a.index === index);
  for (const a of addrs) {
    if (have.some((h) => h.family === a.family && h.address === a.address && h.prefixLen === a.prefixLen)) continue;
    try {
      await nl.addAddress(index, a.family, a.address, a.prefixLen);
    } catch (err) {
      if (!(err instanceof SyscallError && err.errno === 'EEXIST')) throw err;
    }
  }
}

export async function removeAddresses(nl: NetlinkHandle, index: number, addrs: readonly IfAddress[]): Promise<void> {
  for (const a of addrs) await nl.deleteAddress(index, a.family, a.address, a.prefixLen);
}

/** The VLANs a bridge port carries. */
export interface PortVlans {
  /** Untagged access VLAN (the port's PVID); 0 or undefined: none. */
  access?: number;
  /** Tagged (trunk) VLANs. */
  trunk?: readonly number[];
  /** Keep the kernel's default VLAN 1 on the port (default true). */
  keepDefault?: boolean;
}

export const hasVlans = (v: PortVlans | undefined): boolean => Boolean(v && (v.access || v.trunk?.length));

/** Sets a port's VLANs on a filtering bridge (EOPNOTSUPP from a kernel or bridge that cannot). */
export async function setPortVlans(nl: NetlinkHandle, port: number, v: PortVlans | undefined): Promise<void> {
  if (!v || !hasVlans(v)) return;
  if (v.keepDefault === false) {
    // A port (or kernel) without the default VLAN has nothing to remove.
    await nl.bridgeVlan(port, 'del', 1).catch((err: unknown) => {
      if (!(err instanceof SyscallError && ['ENOENT', 'EINVAL'].includes(err.errno))) throw err;
    });
  }
  if (v.access) await nl.bridgeVlan(port, 'add', v.access, { pvid: true, untagged: true });
  for (const id of v.trunk ?? []) await nl.bridgeVlan(port, 'add', id);
}
