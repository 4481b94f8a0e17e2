// Endpoints: a sandbox joined to a network. Connect validates everything (the
// driver's join rules, port specs, addresses, host ports) before it records the
// endpoint and touches the kernel; any failure after that is rolled back.
import type { StoreTx } from '../store/store.js';
import { parseExpose, parsePortSpec } from '../portmapper/spec.js';
import type { EndpointRequest, JoinContext } from '../driverapi/driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from './model.js';
import { AlreadyExistsError, ConflictError, NotFoundError } from '../errors.js';
import { releaseAddresses } from '../ipam/allocator.js';
import { ensureDefaultRoute } from '../plumbing/veth.js';
import { faultPoint } from '../fault.js';
import type { ConnectOptions } from './requests.js';
import type { Core } from './core.js';
import type { Publisher } from './publish.js';

export class Endpoints {
  constructor(
    private readonly core: Core,
    private readonly publish: Publisher,
  ) {}

  async connect(tx: StoreTx<State>, s: State, net: NetworkRecord, sbx: SandboxRecord, opts: ConnectOptions): Promise<EndpointRecord> {
    const { core } = this;
    const mine = core.endpointsOf(s, (e) => e.sandboxId === sbx.id);
    if (mine.some((e) => e.networkId === net.id)) throw new AlreadyExistsError(`sandbox ${sbx.name} is already connected to network ${net.name}`);
    if (sbx.kind === 'container') throw new ConflictError(`sandbox ${sbx.name} shares the network namespace of another sandbox (container mode): it cannot be connected to networks`);
    const join: JoinContext = { sandbox: sbx, siblings: mine.map((e) => ({ endpoint: e, network: s.networks[e.networkId]! })).filter((x) => x.network) };
    const exclusive = join.siblings.find((x) => core.driverOf(x.network).exclusive);
    if (exclusive) throw new ConflictError(`sandbox ${sbx.name} is on the ${exclusive.network.name} network (driver ${exclusive.network.driver}): it cannot be connected to other networks`);
    const driver = core.driverOf(net);
    // Parse every port spec before anything is allocated or touched.
    const requests = [...(opts.publish ?? []).map(parsePortSpec), ...(opts.publishAll ? (opts.expose ?? []).map(parseExpose) : [])];
    const req: EndpointRequest = { ip: opts.ip, ip6: opts.ip6, ifname: opts.ifname, publishing: requests.length > 0 };
    driver.checkJoin(net, join, req);

    const id = core.hex();
    // Allocation mutates the subnets' usage maps; it all lands in one write below.
    const plan = driver.planEndpoint(net, id, join, req, core.d.random);
    const { defaultHostIP, ...fields } = plan;
    const ep: EndpointRecord = { id, networkId: net.id, sandboxId: sbx.id, phase: 'creating', ...fields };
    // A port without a host address takes the network's default (host_binding_ipv4), as in Docker.
    const portRequests = requests.map((r) => (r.hostIP === '' && defaultHostIP ? { ...r, hostIP: defaultHostIP } : r));
    if (portRequests.length) ep.ports = await this.publish.allocate(s, sbx, ep, portRequests);
    s.endpoints[id] = ep;
    tx.write(s);
    try {
      await faultPoint('connect:before-join');
      await core.withSandbox(s, sbx, (open) => driver.join(net, ep, open, core.ctx));
      await faultPoint('connect:after-join');
      // Bind before rules, rules before serving: the proxy takes the host ports (a port
      // another program grabbed since the probe fails here), NAT rules follow once the
      // container end exists, and only then does the proxy accept traffic.
      if (ep.ports?.length) {
        await this.publish.proxy(s, false, ep);
        await this.publish.firewall(s);
        await this.publish.proxy(s, true, ep);
      }
      await faultPoint('connect:after-ports');
    } catch (err) {
      await core.rollback(tx, s, `connect ${sbx.name} to ${net.name}`, err, async () => {
        await this.teardown(s, ep);
        if (ep.ports?.length) {
          await this.publish.firewall(s);
          await this.publish.proxy(s, true);
        }
      });
    }
    ep.phase = 'ready';
    tx.write(s);
    return ep;
  }

  async disconnect(tx: StoreTx<State>, s: State, net: NetworkRecord, sbx: SandboxRecord): Promise<void> {
    const ep = this.core.endpointsOf(s, (e) => e.networkId === net.id && e.sandboxId === sbx.id)[0];
    if (!ep) throw new NotFoundError(`sandbox ${sbx.name} is not connected to network ${net.name}`);
    ep.phase = 'removing';
    tx.write(s);
    await faultPoint('disconnect:after-mark');
    // Its port rules go first (desired state leaves out endpoints being removed).
    if (ep.ports?.length) {
      await this.publish.firewall(s);
      await this.publish.proxy(s, true);
    }
    await this.teardown(s, ep);
    tx.write(s);
    await this.electDefaultGateway(s, sbx);
  }

  /**
   * After a disconnect: a family left without a default route gets one through another
   * network's gateway, as Docker re-elects the gateway endpoint (networks in name order).
   */
  private async electDefaultGateway(s: State, sbx: SandboxRecord): Promise<void> {
    const { core } = this;
    if (sbx.kind === 'host' || !core.namespaceAlive(s, sbx)) return;
    const candidates = core
      .endpointsOf(s, (e) => e.sandboxId === sbx.id && e.phase !== 'removing' && Boolean(e.gateway4 || e.gateway6))
      .map((e) => ({ e, name: s.networks[e.networkId]?.name ?? '' }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((x) => x.e);
    if (!candidates.length) return;
    await core.withSandbox(s, sbx, async (open) => {
      const nl = core.d.sys.netlink(open.nsFd);
      try {
        for (const family of [4, 6] as const) {
          const via = candidates.flatMap((e) => {
            const gateway = family === 4 ? e.gateway4 : e.gateway6;
            return gateway ? [{ gateway, ifname: e.ifname }] : [];
          });
          await ensureDefaultRoute(nl, family, via);
        }
      } finally {
        nl.close();
      }
    });
  }

  /** Idempotent: removes the endpoint's plumbing, frees its addresses, drops the record. */
  async teardown(s: State, ep: EndpointRecord): Promise<void> {
    const { core } = this;
    const net = s.networks[ep.networkId];
    const sbx = s.sandboxes[ep.sandboxId];
    if (net) {
      const driver = core.driverOf(net);
      if (sbx && core.namespaceAlive(s, sbx)) await core.withSandbox(s, sbx, (open) => driver.leave(net, ep, open, core.ctx));
      else await driver.leave(net, ep, undefined, core.ctx);
      releaseAddresses(net.subnets, ep.id);
    }
    delete s.endpoints[ep.id];
  }
}
