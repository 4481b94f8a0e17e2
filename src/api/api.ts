// The Api: what every front end (the CLI today; the engine's gRPC services, a
// Docker-API subset later) asks of tsnet, in views rather than records. A front
// end is a thin adapter over this interface; LocalApi (local.ts) implements it
// over the controller in the caller's process.
import type { TsnetError } from '../errors.js';
import type { ConnectOptions, CreateNetworkRequest, CreateSandboxRequest } from '../controller/requests.js';
import type { PublishedPort } from './views.js';
import type { ContainerApi, ImageApi } from './runtime.js';

export type { ConnectOptions, CreateNetworkRequest, CreateSandboxRequest, PublishedPort };

/** ls filters, Docker's: key -> values (values of one key: any; keys: all). */
export type Filters = Record<string, string[]>;

export interface NetworkSummary {
  id: string;
  name: string;
  driver: string;
  scope: 'local';
  ipv6: boolean;
  internal: boolean;
  labels: Record<string, string>;
  created: string;
}

export interface SandboxSummary {
  id: string;
  name: string;
  kind: string;
  /** Names of the networks it is connected to, sorted. */
  networks: string[];
  /** The network namespace's path. */
  key: string;
  created: string;
  ports: PublishedPort[];
}

/** Docker's inspect shapes (network inspect; sandbox inspect like .NetworkSettings), JSON-ready. */
export type InspectView = Record<string, unknown>;

/** A multi-name rm: each name removed, or its failure. */
export interface Removal {
  removed: string[];
  failed: Array<{ ref: string; error: TsnetError }>;
}

export interface SandboxPorts {
  ports: PublishedPort[];
  /** Published ports the userland proxy should hold and cannot, said in words. */
  lost: string[];
}

export interface Api {
  /** The runtime's containers and images. */
  containers: ContainerApi;
  images: ImageApi;
  listNetworks(filters?: Filters): Promise<NetworkSummary[]>;
  inspectNetworks(refs: string[]): Promise<InspectView[]>;
  createNetwork(req: CreateNetworkRequest): Promise<{ id: string }>;
  removeNetworks(refs: string[], opts?: { force?: boolean }): Promise<Removal>;
  pruneNetworks(): Promise<string[]>;
  connect(network: string, sandbox: string, opts?: ConnectOptions): Promise<void>;
  disconnect(network: string, sandbox: string): Promise<void>;
  createSandbox(req: CreateSandboxRequest): Promise<{ id: string }>;
  listSandboxes(filters?: Filters): Promise<SandboxSummary[]>;
  inspectSandboxes(refs: string[]): Promise<InspectView[]>;
  removeSandboxes(refs: string[], opts?: { force?: boolean }): Promise<Removal>;
  /** The path of a sandbox's network namespace (what `sandbox exec` enters). */
  sandboxKey(ref: string): Promise<string>;
  /** A sandbox's published ports; `port` ("80" or "80/udp") narrows them. */
  ports(ref: string, port?: string): Promise<SandboxPorts>;
  /** Brings the kernel back to the recorded state now. */
  reconcile(): Promise<void>;
}
