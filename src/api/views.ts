// The views an Api returns, made from the recorded state (pure): Docker's
// `network inspect` keys, sandbox inspect (like .NetworkSettings of `docker
// inspect`), list summaries and published ports. Front ends present them; none of
// them reads the state itself.
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from '../controller/model.js';
import type { Proto } from '../portmapper/spec.js';

/** How published ports are served: with the userland proxy, every-address ports also answer on [::]. */
export interface PortView {
  proxy: boolean;
}

/** Docker's shape: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}, ranges expanded. */
export function portMap(e: EndpointRecord, view: PortView): Record<string, Array<{ HostIp: string; HostPort: string }>> {
  const out: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const p of e.ports ?? []) {
    // [::] answers through NAT with an IPv6 address, else through the proxy (not for SCTP: NAT only).
    const v6any = Boolean(e.ipv6) || (view.proxy && p.proto !== 'sctp');
    for (let i = 0; i <= p.containerPortEnd - p.containerPort; i++) {
      const key = `${p.containerPort + i}/${p.proto}`;
      const hostPort = String(p.hostPortEnd === p.hostPort ? p.hostPort : p.hostPort + i);
      const ips = p.hostIP === '' ? ['0.0.0.0', ...(v6any ? ['::'] : [])] : [p.hostIP];
      for (const ip of ips) (out[key] ??= []).push({ HostIp: ip, HostPort: hostPort });
    }
  }
  return out;
}

/** One published port on one host address (ranges expanded), as `docker port` lists them. */
export interface PublishedPort {
  containerPort: number;
  proto: Proto;
  /** 0.0.0.0, ::, or one address. */
  hostIP: string;
  hostPort: number;
}

export function publishedPorts(e: EndpointRecord, view: PortView): PublishedPort[] {
  return Object.entries(portMap(e, view)).flatMap(([key, binds]) => {
    const [port, proto] = key.split('/') as [string, Proto];
    return binds.map((b) => ({ containerPort: Number(port), proto, hostIP: b.HostIp, hostPort: Number(b.HostPort) }));
  });
}

export function inspectNetwork(n: NetworkRecord, s: State, view: PortView): Record<string, unknown> {
  const containers: Record<string, unknown> = {};
  for (const e of Object.values(s.endpoints).filter((x) => x.networkId === n.id)) {
    const sbx = s.sandboxes[e.sandboxId];
    containers[e.sandboxId] = {
      Name: sbx?.name ?? '',
      EndpointID: e.id,
      MacAddress: e.mac ?? '',
      IPv4Address: e.ipv4 ?? '',
      IPv6Address: e.ipv6 ?? '',
      Ports: portMap(e, view),
    };
  }
  return {
    Name: n.name,
    Id: n.id,
    Created: n.created,
    Scope: 'local',
    Driver: n.driver,
    EnableIPv6: n.enableIPv6,
    IPAM: {
      Driver: 'default',
      Options: null,
      Config: n.subnets.map((x) => {
        const c: Record<string, unknown> = { Subnet: x.subnet, Gateway: x.gateway };
        if (x.ipRange) c.IPRange = x.ipRange;
        if (Object.keys(x.auxAddresses).length) c.AuxiliaryAddresses = x.auxAddresses;
        return c;
      }),
    },
    Internal: n.internal,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: containers,
    Options: n.options,
    Labels: n.labels,
  };
}

function endpointSettings(e: EndpointRecord, n: NetworkRecord | undefined, view: PortView): Record<string, unknown> {
  const [ip4, len4] = (e.ipv4 ?? '/').split('/');
  const [ip6, len6] = (e.ipv6 ?? '/').split('/');
  return {
    NetworkID: e.networkId,
    EndpointID: e.id,
    Driver: n?.driver ?? '',
    InterfaceName: e.ifname || null,
    HostInterfaceName: e.hostIfname ?? null,
    MacAddress: e.mac ?? '',
    IPAddress: ip4 ?? '',
    IPPrefixLen: len4 ? Number(len4) : 0,
    Gateway: e.gateway4 ?? '',
    GlobalIPv6Address: ip6 ?? '',
    GlobalIPv6PrefixLen: len6 ? Number(len6) : 0,
    IPv6Gateway: e.gateway6 ?? '',
    Ports: portMap(e, view),
  };
}

export function inspectSandbox(x: SandboxRecord, s: State, view: PortView): Record<string, unknown> {
  const networks: Record<string, unknown> = {};
  for (const e of Object.values(s.endpoints).filter((y) => y.sandboxId === x.id)) {
    const n = s.networks[e.networkId];
    networks[n?.name ?? e.networkId] = endpointSettings(e, n, view);
  }
  const owner = x.containerOf ? s.sandboxes[x.containerOf] : undefined;
  return {
    Id: x.id,
    Name: x.name,
    Created: x.created,
    Kind: x.kind,
    SandboxKey: x.key,
    NetworkMode: x.kind === 'container' ? `container:${owner?.name ?? x.containerOf}` : x.kind === 'host' ? 'host' : undefined,
    Pid: x.pid,
    Networks: networks,
  };
}

