// The firewall backend interface. Drivers describe networks at this level
// (bridge, subnets, policy flags); backends decide the rules. Every change is
// applied as one transaction, and reconcile() is the only entry point: given the
// complete desired set it brings the kernel to it, touching only tsnet's objects.
import type { Family } from '../system/kernel.js';

export interface FwNetwork {
  /** Network id (hex); short forms name per-network chains. */
  id: string;
  name: string;
  bridge: string;
  subnets: Array<{ family: Family; cidr: string }>;
  internal: boolean;
  icc: boolean;
  masquerade: boolean;
}

/** One published port (or port range) of one endpoint, in one address family. */
export interface FwBinding {
  networkId: string;
  network: string;
  endpointId: string;
  bridge: string;
  family: Family;
  proto: 'tcp' | 'udp' | 'sctp';
  /** '' = every local address of the family. */
  hostIP: string;
  hostPort: number;
  hostPortEnd: number;
  containerIP: string;
  containerPort: number;
  containerPortEnd: number;
}

/**
 * A host port the userland proxy serves without NAT: IPv6 clients of an endpoint
 * that has only IPv4. Such traffic ends on INPUT, not FORWARD, so the operator's
 * chain is hooked there too for these ports.
 */
export interface FwProxied {
  family: 6;
  proto: 'tcp' | 'udp';
  /** '' = every address. */
  hostIP: string;
  port: number;
  portEnd: number;
}

export interface FwState {
  networks: FwNetwork[];
  bindings?: FwBinding[];
  proxied?: FwProxied[];
  /**
   * Who serves published ports on 127.0.0.0/8: 'proxy' (the userland proxy, as
   * Docker does; no NAT, no route_localnet) or 'nat' (DNAT plus masquerade of
   * 127.0.0.0/8, with route_localnet on the bridges; without the proxy). Default 'nat'.
   */
  localhost?: 'nat' | 'proxy';
}

export interface FirewallBackend {
  readonly name: 'iptables' | 'nftables' | 'none';
  /** Brings the kernel to exactly `desired`; returns whether anything had to change. */
  reconcile(desired: FwState): Promise<{ changed: boolean }>;
  /** Removes every tsnet rule and chain (hooks included), leaving others' rules alone. */
  removeAll(): Promise<void>;
}

export class NoFirewall implements FirewallBackend {
  readonly name = 'none' as const;
  async reconcile(): Promise<{ changed: boolean }> {
    return { changed: false };
  }
  async removeAll(): Promise<void> {}
}
