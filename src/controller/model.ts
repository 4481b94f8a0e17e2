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

// ---------------------------------------------------------------- validation

type Check = (v: unknown, at: string) => void;
const fail = (at: string, what: string): never => {
  throw new Error(`${at} ${what}`);
};
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str: Check = (v, at) => void (typeof v !== 'string' && fail(at, 'is not a string'));
const bool: Check = (v, at) => void (typeof v !== 'boolean' && fail(at, 'is not true or false'));
const num: Check = (v, at) => void (typeof v !== 'number' && fail(at, 'is not a number'));
const opt = (c: Check): Check => (v, at) => void (v !== undefined && c(v, at));
const oneOf = (...xs: string[]): Check => (v, at) => void (!xs.includes(v as string) && fail(at, `is not one of ${xs.join(', ')}`));
const strMap: Check = (v, at) => {
  if (!isObj(v)) fail(at, 'is not an object');
  for (const [k, x] of Object.entries(v as object)) str(x, `${at}.${k}`);
};
const list = (c: Check): Check => (v, at) => {
  if (!Array.isArray(v)) fail(at, 'is not a list');
  (v as unknown[]).forEach((x, i) => c(x, `${at}[${i}]`));
};
const shape = (fields: Record<string, Check>): Check => (v, at) => {
  if (!isObj(v)) fail(at, 'is not an object');
  for (const [k, c] of Object.entries(fields)) c((v as Record<string, unknown>)[k], `${at}.${k}`);
};
const phase = oneOf('creating', 'ready', 'removing');
const subnetState = shape({ subnet: str, gateway: opt(str), ipRange: opt(str), auxAddresses: strMap, used: strMap, last: opt(str) });
const portBinding = shape({ proto: oneOf('tcp', 'udp', 'sctp'), hostIP: str, hostPort: num, hostPortEnd: num, containerPort: num, containerPortEnd: num });
const RECORDS: Record<'networks' | 'endpoints' | 'sandboxes', Check> = {
  networks: shape({
    id: str, name: str, driver: str, created: str, phase, predefined: bool, internal: bool, enableIPv6: bool,
    options: strMap, labels: strMap, subnets: list(subnetState),
    bridge: opt(shape({ name: str, owned: bool, mtu: num, icc: bool, masquerade: bool })),
  }),
  endpoints: shape({
    id: str, networkId: str, sandboxId: str, phase, ifname: str, hostIfname: opt(str), mac: opt(str),
    ipv4: opt(str), ipv6: opt(str), gateway4: opt(str), gateway6: opt(str), ports: opt(list(portBinding)),
  }),
  sandboxes: shape({ id: str, name: str, kind: oneOf('named', 'path', 'pid', 'host', 'container'), key: str, containerOf: opt(str), pid: opt(num), phase, created: str }),
};

/**
 * Checks a parsed state file: every record has the fields and types the code reads
 * and is filed under its own id, and references between records resolve. Throws an
 * Error naming the first problem ("networks.ab12.subnets is not a list").
 */
export function parseState(raw: unknown): State {
  if (!isObj(raw)) fail('the document', 'is not an object');
  const s = raw as Record<string, unknown>;
  if (s.version !== 1) fail('version', `is ${JSON.stringify(s.version)}, not 1 (a state written by another tsnet version?)`);
  for (const [key, check] of Object.entries(RECORDS)) {
    const m = s[key];
    if (!isObj(m)) fail(key, 'is not an object');
    for (const [id, rec] of Object.entries(m as object)) {
      check(rec, `${key}.${id}`);
      if ((rec as { id: string }).id !== id) fail(`${key}.${id}.id`, 'does not match the key it is filed under');
    }
  }
  opt(oneOf('iptables', 'nftables', 'none'))(s.firewall, 'firewall');
  const st = raw as unknown as State;
  for (const e of Object.values(st.endpoints)) {
    if (!st.networks[e.networkId]) fail(`endpoints.${e.id}.networkId`, 'names no network');
    if (!st.sandboxes[e.sandboxId]) fail(`endpoints.${e.id}.sandboxId`, 'names no sandbox');
  }
  for (const x of Object.values(st.sandboxes)) {
    if (x.containerOf !== undefined && !st.sandboxes[x.containerOf]) fail(`sandboxes.${x.id}.containerOf`, 'names no sandbox');
  }
  return st;
}
