// Networks: planned by their driver (devices, options) and IPAM (subnets), made
// real by the driver, removed when no endpoint uses them.
import type { StoreTx } from '../store/store.js';
import type { LinkInfo } from '../system/kernel.js';
import type { NetworkRecord, State } from './model.js';
import { AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, runAll } from '../errors.js';
import { planIpam } from '../ipam/allocator.js';
import { parseCidr, type Cidr } from '../ipam/addr.js';
import { findByRef, validateName } from './lookup.js';
import { faultPoint } from '../fault.js';
import type { CreateNetworkRequest, RemoveResult } from './requests.js';
import { now, type Core } from './core.js';
import type { Publisher } from './publish.js';
import type { Endpoints } from './endpoints.js';

/** Checks of a request that need no state (before the lock is taken). */
export function validateNetworkRequest(req: CreateNetworkRequest): void {
  validateName(req.name, 'network');
  if (req.mtu !== undefined && (!Number.isInteger(req.mtu) || req.mtu < 68 || req.mtu > 65535)) {
    throw new InvalidConfigError(`--mtu ${req.mtu} must be a whole number from 68 to 65535`);
  }
}

export class Networks {
  constructor(
    private readonly core: Core,
    private readonly publish: Publisher,
    private readonly endpoints: Endpoints,
  ) {}

  find(s: State, ref: string): NetworkRecord {
    return findByRef(Object.values(s.networks), ref, 'network');
  }

  async create(tx: StoreTx<State>, s: State, req: CreateNetworkRequest): Promise<NetworkRecord> {
    const { core } = this;
    if (Object.values(s.networks).some((n) => n.name === req.name)) throw new AlreadyExistsError(`network with name ${req.name} already exists`);
    const driverName = req.driver ?? 'bridge';
    const driver = core.d.drivers.get(driverName);
    if (!driver.userCreatable) throw new InvalidConfigError(`only one instance of "${driverName}" network is allowed: use the predefined one`);
    const net = await this.plan(s, { ...req, driver: driverName });
    s.networks[net.id] = net;
    tx.write(s);
    try {
      await faultPoint('network-create:before-apply');
      await driver.ensureNetwork(net, core.ctx);
      await this.publish.firewall(s);
      await faultPoint('network-create:after-apply');
    } catch (err) {
      await core.rollback(tx, s, `create network ${net.name}`, err, async () => {
        await runAll('rollback', [
          () => driver.deleteNetwork(net, core.ctx),
          async () => {
            delete s.networks[net.id];
            await this.publish.firewall(s);
          },
        ]);
      });
    }
    net.phase = 'ready';
    tx.write(s);
    return net;
  }

  /** The record of a new network (phase creating): the driver's plan and, for IPAM drivers, its subnets. */
  private async plan(s: State, req: CreateNetworkRequest & { driver: string }): Promise<NetworkRecord> {
    const { core } = this;
    const driver = core.d.drivers.get(req.driver);
    const id = core.hex();
    const hostLinks = await core.hostLinks();
    const plan = driver.plan(
      { name: req.name, driver: req.driver, internal: Boolean(req.internal), enableIPv6: Boolean(req.ipv6), mtu: req.mtu, options: req.options ?? {} },
      { networks: Object.values(s.networks), hostLinks, id },
    );
    const subnetsReq = req.subnets ?? [];
    const ipv6 = Boolean(req.ipv6) || subnetsReq.some((x) => x.includes(':'));
    let subnets: NetworkRecord['subnets'] = [];
    if (driver.ipam) {
      subnets = planIpam(
        { subnets: subnetsReq, gateways: req.gateways ?? [], ipRanges: req.ipRanges ?? [], auxAddresses: req.auxAddresses ?? {}, ipv6 },
        { taken: this.takenSubnets(s), hostRoutes: await this.hostRoutes(hostLinks, s), ulaSeed: core.d.random(5) },
      );
    } else if (subnetsReq.length || req.gateways?.length) {
      throw new InvalidConfigError(`driver ${req.driver} takes no IPAM configuration`);
    }
    return {
      id,
      name: req.name,
      driver: req.driver,
      created: now(),
      phase: 'creating',
      predefined: false,
      internal: Boolean(req.internal),
      enableIPv6: ipv6,
      options: plan.options,
      labels: req.labels ?? {},
      subnets,
      bridge: plan.bridge,
    };
  }

  /** Every driver's predefined network (Docker's bridge, host and none), in registration order. */
  async predefined(s: State): Promise<NetworkRecord[]> {
    const out: NetworkRecord[] = [];
    for (const type of this.core.d.drivers.types()) {
      const p = this.core.d.drivers.get(type).predefined;
      if (!p) continue;
      const n = await this.plan(s, { name: p.name, driver: type, options: { ...p.options } });
      out.push({ ...n, phase: 'ready', predefined: true });
    }
    return out;
  }

  /** Each name on its own, failures per name (see Sandboxes.remove). */
  async remove(tx: StoreTx<State>, s: State, refs: string[], opts: { force?: boolean }): Promise<RemoveResult> {
    const out: RemoveResult = { removed: [], failed: [] };
    for (const ref of refs) {
      try {
        const n = this.find(s, ref);
        this.checkRemovable(s, n);
        await this.removeOne(tx, s, n);
        out.removed.push(ref);
      } catch (err) {
        if (!(opts.force && err instanceof NotFoundError)) out.failed.push({ ref, error: err });
      }
    }
    return out;
  }

  async prune(tx: StoreTx<State>, s: State): Promise<string[]> {
    const unused = Object.values(s.networks).filter((n) => !n.predefined && !this.core.endpointsOf(s, (e) => e.networkId === n.id).length);
    for (const n of unused) await this.removeOne(tx, s, n);
    return unused.map((n) => n.name);
  }

  private checkRemovable(s: State, n: NetworkRecord): void {
    if (n.predefined) throw new ConflictError(`${n.name} is a pre-defined network and cannot be removed`);
    const eps = this.core.endpointsOf(s, (e) => e.networkId === n.id);
    if (eps.length) {
      const names = eps.map((e) => s.sandboxes[e.sandboxId]?.name ?? e.sandboxId.slice(0, 12));
      throw new ConflictError(`network ${n.name} has active endpoints (${names.join(', ')}): disconnect them first`);
    }
  }

  private async removeOne(tx: StoreTx<State>, s: State, n: NetworkRecord): Promise<void> {
    n.phase = 'removing';
    tx.write(s);
    await faultPoint('network-rm:after-mark');
    await runAll(`remove network ${n.name}`, [() => this.publish.firewall(s), () => this.core.driverOf(n).deleteNetwork(n, this.core.ctx)]);
    delete s.networks[n.id];
    tx.write(s);
  }

  /** Idempotent: a network whose creation or removal was interrupted goes, with any endpoint left on it. */
  async teardown(s: State, n: NetworkRecord): Promise<void> {
    for (const e of this.core.endpointsOf(s, (x) => x.networkId === n.id)) await this.endpoints.teardown(s, e);
    await this.core.driverOf(n).deleteNetwork(n, this.core.ctx);
    delete s.networks[n.id];
  }

  private takenSubnets(s: State): Array<{ cidr: Cidr; network: string }> {
    return Object.values(s.networks).flatMap((n) => n.subnets.map((x) => ({ cidr: parseCidr(x.subnet) as Cidr, network: n.name })));
  }

  /** Destinations of the host's IPv4 and IPv6 routes, but default routes and those of our own bridges. */
  private async hostRoutes(links: LinkInfo[], s: State): Promise<Cidr[]> {
    const ours = new Set(Object.values(s.networks).map((n) => n.bridge?.name).filter(Boolean));
    const ourIdx = new Set(links.filter((l) => ours.has(l.name)).map((l) => l.index));
    const nl = this.core.d.sys.netlink();
    try {
      const routes = [...(await nl.listRoutes(4)), ...(await nl.listRoutes(6))];
      return routes
        .filter((r) => r.dst && r.dstLen > 0 && !(r.oif && ourIdx.has(r.oif)))
        .filter((r) => !(r.family === 6 && r.dst!.startsWith('fe80')))
        .map((r) => parseCidr(`${r.dst}/${r.dstLen}`) as Cidr);
    } finally {
      nl.close();
    }
  }
}
