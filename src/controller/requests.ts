// What callers ask the controller for: the shapes every front end (the CLI through
// the Api, the engine's gRPC services next) fills in.

export interface CreateNetworkRequest {
  name: string;
  driver?: string;
  subnets?: string[];
  gateways?: string[];
  ipRanges?: string[];
  auxAddresses?: Record<string, string>;
  ipv6?: boolean;
  internal?: boolean;
  mtu?: number;
  options?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface ConnectOptions {
  ip?: string;
  ip6?: string;
  ifname?: string;
  /** Docker -p specs: [hostIP:][hostPort[-end]:]containerPort[-end][/proto]. */
  publish?: string[];
  /** -P: publish every --expose'd port on an ephemeral host port. */
  publishAll?: boolean;
  /** --expose PORT[-END][/proto] */
  expose?: string[];
}

export interface CreateSandboxRequest extends ConnectOptions {
  name: string;
  /** 'bridge' (default), 'none', 'host', a network name, or 'container:NAME'. */
  network?: string;
  /** Use an existing namespace by path instead of creating one. */
  netnsPath?: string;
  /** Use the namespace of a process. */
  pid?: number;
}

/** What a multi-name rm did: the names removed, and each failure with its name. */
export interface RemoveResult {
  removed: string[];
  failed: Array<{ ref: string; error: unknown }>;
}
