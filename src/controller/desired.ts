// Pure projections of the recorded state: what the firewall and the userland
// proxy must hold for it. No kernel, no I/O: the controller (and later the engine)
// feeds the results to the backends; unit tests check them directly.
import type { FwBinding, FwNetwork, FwProxied, FwState } from '../firewall/backend.js';
import type { ProxyBinding, ProxyLost } from '../portmapper/proxy/protocol.js';
import { describe } from '../portmapper/allocator.js';
import type { EndpointRecord, NetworkRecord, State } from './model.js';

const live = (x: { phase: string }) => x.phase !== 'removing';

/**
 * The firewall's wanted state: every live network (as its driver describes it),
 * every published port of a live endpoint per address family, the ports the proxy
 * serves on INPUT (IPv6 clients of IPv4-only endpoints), and who serves loopback.
 */
export function desiredFirewall(s: State, networkOf: (n: NetworkRecord) => FwNetwork | undefined, opts: { proxy: boolean }): FwState {
  const networks = Object.values(s.networks)
    .filter(live)
    .map(networkOf)
    .filter((x): x is FwNetwork => Boolean(x));
  const bindings: FwBinding[] = [];
  const proxied: FwProxied[] = [];
  for (const ep of Object.values(s.endpoints)) {
    const n = s.networks[ep.networkId];
    if (!ep.ports?.length || !live(ep) || !n?.bridge || !live(n)) continue;
    for (const p of ep.ports) {
      for (const [family, cidr] of [[4, ep.ipv4], [6, ep.ipv6]] as const) {
        if (!cidr) continue;
        const hostFamily = p.hostIP === '' ? family : p.hostIP.includes(':') ? 6 : 4;
        if (hostFamily !== family) continue;
        bindings.push({
          networkId: n.id, network: n.name, endpointId: ep.id, bridge: n.bridge.name, family,
          proto: p.proto, hostIP: p.hostIP === '0.0.0.0' || p.hostIP === '::' ? '' : p.hostIP,
          hostPort: p.hostPort, hostPortEnd: p.hostPortEnd,
          containerIP: cidr.split('/')[0]!, containerPort: p.containerPort, containerPortEnd: p.containerPortEnd,
        });
      }
      // IPv6 clients of an IPv4-only endpoint reach the proxy on INPUT: the operator's hook goes there too.
      if (opts.proxy && !ep.ipv6 && ep.ipv4 && p.proto !== 'sctp' && (p.hostIP === '' || p.hostIP.includes(':'))) {
        proxied.push({ family: 6, proto: p.proto, hostIP: p.hostIP === '::' ? '' : p.hostIP, port: p.hostPort, portEnd: p.hostPortEnd });
      }
    }
  }
  // With the userland proxy, 127.0.0.1 is served by it (as Docker does), not by NAT.
  return { networks, bindings, proxied, localhost: opts.proxy ? 'proxy' : 'nat' };
}

/** Every listening address the userland proxy must hold, with its target (ranges expanded). */
export function proxyBindings(s: State): ProxyBinding[] {
  const out: ProxyBinding[] = [];
  for (const ep of Object.values(s.endpoints)) {
    if (!ep.ports?.length || !live(ep)) continue;
    const v4 = ep.ipv4?.split('/')[0];
    const v6 = ep.ipv6?.split('/')[0];
    for (const p of ep.ports) {
      if (p.proto === 'sctp') continue; // Node has no SCTP sockets: NAT only
      // Every address means both families; a host address of the other family than the endpoint's is served across.
      const listens: Array<[string, string | undefined]> =
        p.hostIP === '' ? [['0.0.0.0', v4 ?? v6], ['::', v6 ?? v4]] : [[p.hostIP, p.hostIP.includes(':') ? v6 ?? v4 : v4 ?? v6]];
      for (const [hostIP, target] of listens) {
        if (!target) continue;
        for (let i = 0; i <= p.hostPortEnd - p.hostPort; i++) {
          const targetPort = p.containerPortEnd === p.containerPort ? p.containerPort : p.containerPort + i;
          out.push({ proto: p.proto, hostIP, hostPort: p.hostPort + i, targetIP: target, targetPort });
        }
      }
    }
  }
  return out;
}

/** The endpoint a proxy binding belongs to. */
export function ownerOf(s: State, b: Pick<ProxyBinding, 'proto' | 'hostIP' | 'hostPort'>): EndpointRecord | undefined {
  return Object.values(s.endpoints).find((e) =>
    (e.ports ?? []).some(
      (p) => p.proto === b.proto && b.hostPort >= p.hostPort && b.hostPort <= p.hostPortEnd && (p.hostIP === b.hostIP || (p.hostIP === '' && (b.hostIP === '0.0.0.0' || b.hostIP === '::'))),
    ),
  );
}

/** "published port 0.0.0.0:8080/tcp of sandbox web is not held by the userland proxy: ..." */
export function lostMessage(s: State, l: ProxyLost, owner: EndpointRecord | undefined): string {
  const sbx = owner ? s.sandboxes[owner.sandboxId]?.name ?? owner.sandboxId.slice(0, 12) : 'unknown';
  const why = l.code === 'EADDRINUSE' ? 'another program has it' : l.code;
  return `published port ${describe({ proto: l.binding.proto, hostIP: l.binding.hostIP, hostPort: l.binding.hostPort })} of sandbox ${sbx} is not held by the userland proxy: ${why} (retrying every few seconds)`;
}
