// Publishing: choosing host ports for an endpoint, and making the firewall and the
// userland proxy hold exactly what the state publishes (the projections in
// desired.ts say what that is; this applies them).
import type { FirewallBackend, FwState } from '../firewall/backend.js';
import { allocatePorts, describe, ephemeralRange, type PortBinding, type Published } from '../portmapper/allocator.js';
import type { PortRequest } from '../portmapper/spec.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from './model.js';
import { InvalidConfigError, PortInUseError, SyscallError } from '../errors.js';
import { desiredFirewall, lostMessage, ownerOf, proxyBindings } from './desired.js';
import type { Core } from './core.js';

export class Publisher {
  constructor(private readonly core: Core) {}

  /** What the firewall must hold for s. */
  desired(s: State): FwState {
    return desiredFirewall(s, (n: NetworkRecord) => this.core.driverOf(n).firewall(n), { proxy: Boolean(this.core.d.proxy) });
  }

  /** Rewrites the firewall if it differs from what s needs (one transaction). */
  firewall(s: State, backend: FirewallBackend = this.core.d.firewall): Promise<{ changed: boolean }> {
    return backend.reconcile(this.desired(s));
  }

  /**
   * Makes the proxy hold exactly the published ports. A port of `mine` (the
   * endpoint this command publishes) that cannot be held fails the command; other
   * lost ports (taken by another program while the proxy was down) are told to the
   * user, and the proxy keeps trying to take them back.
   */
  async proxy(s: State, activate: boolean, mine?: EndpointRecord): Promise<void> {
    const { proxy, notice } = this.core.d;
    if (!proxy) return;
    const lost = await proxy.sync(proxyBindings(s), activate);
    for (const l of lost) {
      const owner = ownerOf(s, l.binding);
      const what = describe({ proto: l.binding.proto, hostIP: l.binding.hostIP, hostPort: l.binding.hostPort });
      if (mine && owner?.id === mine.id) {
        if (l.code === 'EADDRINUSE') throw new PortInUseError(`port ${what} is already in use by another program`);
        throw new SyscallError('bind', l.code, `the userland proxy cannot bind ${what}: ${l.code}`);
      }
      notice?.(lostMessage(s, l, owner));
    }
  }

  /** Published ports the userland proxy should hold and cannot, with their endpoint (for port and inspect). */
  async lost(s: State): Promise<Array<{ endpointId?: string; text: string }>> {
    const { proxy } = this.core.d;
    if (!proxy) return [];
    return (await proxy.lost()).map((l) => {
      const owner = ownerOf(s, l.binding);
      return { endpointId: owner?.id, text: lostMessage(s, l, owner) };
    });
  }

  /** Chooses host ports for an endpoint's requests (validation only: nothing is touched). */
  async allocate(s: State, sbx: SandboxRecord, ep: EndpointRecord, reqs: PortRequest[]): Promise<PortBinding[]> {
    const { sys, proxy } = this.core.d;
    const published: Published[] = [];
    for (const e of Object.values(s.endpoints)) {
      for (const p of e.ports ?? []) published.push({ ...p, owner: s.sandboxes[e.sandboxId]?.name ?? e.sandboxId.slice(0, 12) });
    }
    const ephemeral = ephemeralRange(sys.sysctl.get('net.ipv4.ip_local_port_range'), sys.sysctl.get('net.ipv4.ip_local_reserved_ports'));
    const out: PortBinding[] = [];
    for (const r of reqs) {
      const fam = r.hostIP === '' ? 0 : r.hostIP.includes(':') ? 6 : 4;
      // A host address of the other family than the endpoint's is served by the userland proxy (as Docker does).
      const spec = `host address ${r.hostIP}`;
      if ((fam === 4 && !ep.ipv4) || (fam === 6 && !ep.ipv6)) {
        if (!proxy) {
          throw new InvalidConfigError(`sandbox ${sbx.name} has no IPv${fam} address on network ${s.networks[ep.networkId]?.name} for ${spec}, and without the userland proxy (TSNET_USERLAND_PROXY=false) nothing can serve it${fam === 6 ? ' (create the network with --ipv6)' : ''}`);
        }
        if (r.proto === 'sctp') throw new InvalidConfigError(`${spec}: SCTP is NAT only, and sandbox ${sbx.name} has no IPv${fam} address on this network`);
      }
      const b = await allocatePorts(r, { published, ephemeral, inUse: (proto, ip, port) => sys.portInUse(proto, ip, port) });
      out.push(b);
      published.push({ ...b, owner: sbx.name });
    }
    return out;
  }
}
