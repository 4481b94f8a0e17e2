// The persisted desired state: networks, endpoints and sandboxes (libnetwork's CNM).
import type { SubnetState } from '../ipam/allocator.js';
import type { PortBinding } from '../portmapper/allocator.js';

/** Lifecycle of a record: 'creating'/'removing' mark an operation in flight; a
 * record found in either state by a later process belongs to a dead process and
 * is torn down by reconcile. */
export type RecordPhase = 'creating' | 'ready' | 'removing';

export interface BridgeConfig {
  /** Bridge device name. */
  name: string;
  /** True when tsnet created the device (and so deletes it); false for an adopted bridge. */
  owned: boolean;
  mtu: number;
  icc: boolean;
  masquerade: boolean;
}

export interface NetworkRecord {
  id: string;
  name: string;
  driver: string;
  created: string;
  phase: RecordPhase;
  predefined: boolean;
  internal: boolean;
  enableIPv6: boolean;
  options: Record<string, string>;
  labels: Record<string, string>;
  subnets: SubnetState[];
  bridge?: BridgeConfig;
}

export interface EndpointRecord {
  id: string;
  networkId: string;
  sandboxId: string;
  phase: RecordPhase;
  /** Interface name inside the sandbox. */
  ifname: string;
  /** Host side of the veth pair (bridge driver). */
  hostIfname?: string;
  mac?: string;
  ipv4?: string; // CIDR form, e.g. 172.17.0.2/16
  ipv6?: string;
  gateway4?: string;
  gateway6?: string;
  /** Published ports (bridge driver). */
  ports?: PortBinding[];
}

export type SandboxKind = 'named' | 'path' | 'pid' | 'host' | 'container';

export interface SandboxRecord {
  id: string;
  name: string;
  kind: SandboxKind;
  /** Path of the network namespace (the "SandboxKey"). */
  key: string;
  /** For kind 'container': the sandbox whose namespace this one shares. */
  containerOf?: string;
  /** For kind 'pid': the process it was taken from. */
  pid?: number;
  phase: RecordPhase;
  created: string;
}

export interface State {
  version: 1;
  networks: Record<string, NetworkRecord>;
  endpoints: Record<string, EndpointRecord>;
  sandboxes: Record<string, SandboxRecord>;
  /** The firewall backend that programmed the kernel last (a different one now removes its rules). */
  firewall?: 'iptables' | 'nftables' | 'none';
}

export function emptyState(): State {
  return { version: 1, networks: {}, endpoints: {}, sandboxes: {} };
}

export const cloneState = (s: State): State => structuredClone(s);
