// The NetworkDriver interface and the driver registry.
import type { Kernel, LinkInfo } from '../system/kernel.js';
import type { Logger } from '../log.js';
import type { FwNetwork } from '../firewall/backend.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../controller/model.js';
import { InvalidConfigError } from '../errors.js';

export interface DriverContext {
  sys: Kernel;
  log: Logger;
  /** Published ports answer on 127.0.0.1 through NAT (no userland proxy): bridges need route_localnet. */
  localhostNat?: boolean;
}

export interface NetworkSpec {
  name: string;
  driver: string;
  internal: boolean;
  enableIPv6: boolean;
  mtu?: number;
  options: Record<string, string>;
}

export interface PlanContext {
  /** Networks that exist already (for name clashes of devices). */
  networks: NetworkRecord[];
  /** Links of the host namespace. */
  hostLinks: LinkInfo[];
  /** The id chosen for the new network. */
  id: string;
}

/** What a driver decided about a new network (merged into the NetworkRecord). */
export interface DriverNetworkPlan {
  bridge?: NetworkRecord['bridge'];
  options: Record<string, string>;
}

/** What a connect asks of the driver (flags of `network connect` / `sandbox create`). */
export interface EndpointRequest {
  ip?: string;
  ip6?: string;
  ifname?: string;
  /** Whether the endpoint publishes ports (-p/-P). */
  publishing: boolean;
}

/** The driver's part of a new endpoint (merged into the EndpointRecord). */
export interface EndpointPlan {
  ifname: string;
  hostIfname?: string;
  mac?: string;
  ipv4?: string;
  gateway4?: string;
  ipv6?: string;
  gateway6?: string;
  /** The host address of its published ports when -p names none ('' = every address). */
  defaultHostIP: string;
}

/** The sandbox a connect joins, with the endpoints it has already. */
export interface JoinContext {
  sandbox: SandboxRecord;
  siblings: Array<{ endpoint: EndpointRecord; network: NetworkRecord }>;
}

/** A sandbox opened for the duration of one operation. */
export interface OpenSandbox {
  record: SandboxRecord;
  /** fd of its network namespace. */
  nsFd: number;
}

export interface NetworkDriver {
  readonly type: string;
  /** Whether users may create networks of this driver (host and null are singletons). */
  readonly userCreatable: boolean;
  /** A sandbox on a network of this driver may be on no other (the null driver). */
  readonly exclusive?: boolean;
  /** Its networks take subnets and addresses from IPAM. */
  readonly ipam?: boolean;
  /** The network of this driver every host has (Docker's bridge, host, none), made at first use. */
  readonly predefined?: { name: string; options: Record<string, string> };
  /** Pure: validates driver options and decides the driver's part of the network. */
  plan(spec: NetworkSpec, ctx: PlanContext): DriverNetworkPlan;
  /** Pure: refuses a join this driver cannot make (ConflictError, InvalidConfigError) before anything is allocated. */
  checkJoin(net: NetworkRecord, join: JoinContext, req: EndpointRequest): void;
  /**
   * Decides the endpoint's interface names, addresses and MAC. Addresses are
   * allocated in net.subnets (the caller persists them with the endpoint); id is
   * the endpoint's, random gives fresh bytes.
   */
  planEndpoint(net: NetworkRecord, id: string, join: JoinContext, req: EndpointRequest, random: (n: number) => Buffer): EndpointPlan;
  /** Idempotent: makes the network's kernel objects exist as recorded. */
  ensureNetwork(net: NetworkRecord, ctx: DriverContext): Promise<void>;
  /** Idempotent and cheap (a sysctl read or two): settings that depend on how tsnet runs; reconcile calls it every command. */
  ensureSettings?(net: NetworkRecord, ctx: DriverContext): void;
  /** Idempotent: removes the network's kernel objects. */
  deleteNetwork(net: NetworkRecord, ctx: DriverContext): Promise<void>;
  /** Plumbs the endpoint into the sandbox. */
  join(net: NetworkRecord, ep: EndpointRecord, sbx: OpenSandbox, ctx: DriverContext): Promise<void>;
  /** Idempotent: removes the endpoint's plumbing; sbx is undefined when the namespace is gone. */
  leave(net: NetworkRecord, ep: EndpointRecord, sbx: OpenSandbox | undefined, ctx: DriverContext): Promise<void>;
  /** Host links this network and its endpoints own (reconcile keeps these). */
  ownedLinks(net: NetworkRecord, eps: EndpointRecord[]): string[];
  /** Whether the endpoint's host-side plumbing is present among the host links (by name). */
  endpointPresent(net: NetworkRecord, ep: EndpointRecord, hostLinks: ReadonlyMap<string, LinkInfo>): boolean;
  /** Whether the network's kernel objects look complete among the host links (by name). */
  networkPresent(net: NetworkRecord, hostLinks: ReadonlyMap<string, LinkInfo>): boolean;
  /** The network as the firewall backend sees it, if it needs rules. */
  firewall(net: NetworkRecord): FwNetwork | undefined;
}

export class DriverRegistry {
  private readonly drivers = new Map<string, NetworkDriver>();
  register(d: NetworkDriver): this {
    this.drivers.set(d.type, d);
    return this;
  }
  get(type: string): NetworkDriver {
    const d = this.drivers.get(type);
    if (!d) throw new InvalidConfigError(`unknown network driver "${type}" (available: ${[...this.drivers.keys()].join(', ')})`);
    return d;
  }
  types(): string[] {
    return [...this.drivers.keys()];
  }
}
