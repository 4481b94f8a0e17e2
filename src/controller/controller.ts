// The controller: validates requests, records intent in the store, drives the
// drivers and the firewall, and reconciles the kernel with the recorded state
// at the start of every operation that changes anything.
import { ensureDefaultRoute } from '../plumbing/veth.js';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { Store, StoreTx } from '../store/store.js';
import type { LinkInfo, Kernel } from '../system/kernel.js';
import type { FirewallBackend, FwState } from '../firewall/backend.js';
import { parseExpose, parsePortSpec, type PortRequest } from '../portmapper/spec.js';
import { allocatePorts, describe, ephemeralRange, type PortBinding, type Published } from '../portmapper/allocator.js';
import type { ProxyPort } from '../portmapper/proxy/client.js';
import type { DriverContext, DriverRegistry, EndpointRequest, JoinContext, OpenSandbox } from '../driverapi/driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from './model.js';
import { AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, PortInUseError, SyscallError, runAll } from '../errors.js';
import { planIpam, releaseAddresses } from '../ipam/allocator.js';
import { parseCidr, type Cidr } from '../ipam/addr.js';
import { findByRef, validateName } from './lookup.js';
import { desiredFirewall, lostMessage, ownerOf, proxyBindings } from './desired.js';
import { faultPoint } from '../fault.js';
import { CONTAINER_PREFIX, checkRemovable, isContainerMode, planShare } from './sharing.js';

export interface ControllerDeps {
  store: Store<State>;
  sys: Kernel;
  firewall: FirewallBackend;
  drivers: DriverRegistry;
  log: Logger;
  runDir: string;
  /** Tag of this tsnet instance (derived from its state root) carried by every link it makes. */
  instance: string;
  random: (n: number) => Buffer;
  /** How long a full sweep stays fresh (default SWEEP_INTERVAL_MS; 0 = sweep at every command). */
  sweepIntervalMs?: number;
  /** The userland proxy (holds every published port; serves [::1] and --firewall none). */
  proxy?: ProxyPort;
  /** Another backend: to remove what it left when the host switched to this one, and for reads under a different --firewall. */
  firewallOf?: (name: 'iptables' | 'nftables' | 'none') => FirewallBackend;
  /** Tells the user something they must know (a backend switch, a lost port): the CLI prints it on stderr. */
  notice?: (message: string) => void;
}

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

const now = () => new Date().toISOString();


/** How long a full sweep of endpoints and leaked objects stays fresh for ordinary commands. */
export const SWEEP_INTERVAL_MS = 30_000;

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export class Controller {
  private readonly ctx: DriverContext;
  constructor(private readonly d: ControllerDeps) {
    this.ctx = { sys: d.sys, log: d.log.child({ component: 'driver' }), localhostNat: !d.proxy };
  }

  private hex(bytes = 32): string {
    return this.d.random(bytes).toString('hex');
  }

  // ---------------------------------------------------------------- reading

  /** The current state, initialising the store (predefined networks) if it is new. */
  async snapshot(): Promise<State> {
    const s = this.d.store.read();
    // A record left mid-operation means a process died (or is working right now):
    // take the lock and reconcile, so even a read-only command leaves nothing leaked.
    const inFlight = [s.networks, s.endpoints, s.sandboxes].some((m) => Object.values(m).some((x) => x.phase !== 'ready'));
    // A read never moves rules to another backend (a `--firewall none` on `ls` must not strip the host).
    if (Object.keys(s.networks).length && !inFlight) {
      // Whoever notices first: a dead userland proxy is started again (it reloads its own ports).
      this.d.proxy?.ensureRunning();
      return s;
    }
    return this.d.store.transact(async (tx) => this.reconcileLocked(tx, { readOnly: true }));
  }

  findNetwork(s: State, ref: string): NetworkRecord {
    return findByRef(Object.values(s.networks), ref, 'network');
  }

  findSandbox(s: State, ref: string): SandboxRecord {
    return findByRef(Object.values(s.sandboxes), ref, 'sandbox');
  }

  endpointsOf(s: State, pred: (e: EndpointRecord) => boolean): EndpointRecord[] {
    return Object.values(s.endpoints).filter(pred);
  }

  // ---------------------------------------------------------------- networks

  async createNetwork(req: CreateNetworkRequest): Promise<NetworkRecord> {
    validateName(req.name, 'network');
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      if (Object.values(s.networks).some((n) => n.name === req.name)) throw new AlreadyExistsError(`network with name ${req.name} already exists`);
      const driverName = req.driver ?? 'bridge';
      const driver = this.d.drivers.get(driverName);
      if (!driver.userCreatable) throw new InvalidConfigError(`only one instance of "${driverName}" network is allowed: use the predefined one`);
      if (req.mtu !== undefined && (!Number.isInteger(req.mtu) || req.mtu < 68 || req.mtu > 65535)) {
        throw new InvalidConfigError(`--mtu ${req.mtu} must be a whole number from 68 to 65535`);
      }
      const net = await this.planNetwork(s, { ...req, driver: driverName });
      s.networks[net.id] = net;
      tx.write(s);
      try {
        await faultPoint('network-create:before-apply');
        await driver.ensureNetwork(net, this.ctx);
        await this.d.firewall.reconcile(this.desiredFirewall(s));
        await faultPoint('network-create:after-apply');
      } catch (err) {
        await this.rollback(tx, s, `create network ${net.name}`, err, async () => {
          await runAll('rollback', [
            () => driver.deleteNetwork(net, this.ctx),
            async () => {
              delete s.networks[net.id];
              await this.d.firewall.reconcile(this.desiredFirewall(s));
            },
          ]);
        });
      }
      net.phase = 'ready';
      tx.write(s);
      return net;
    });
  }

  private async planNetwork(s: State, req: CreateNetworkRequest & { driver: string }): Promise<NetworkRecord> {
    const driver = this.d.drivers.get(req.driver);
    const id = this.hex();
    const hostLinks = await this.hostLinks();
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
        { taken: this.takenSubnets(s), hostRoutes: await this.hostRoutes(hostLinks, s), ulaSeed: this.d.random(5) },
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

  /**
   * Removes what can be removed, as Docker's multi-argument rm does: each name is
   * looked up and removed on its own; failures are reported per name and do not
   * stop the others. force: a name that does not exist is not a failure.
   */
  async removeNetworks(refs: string[], opts: { force?: boolean } = {}): Promise<RemoveResult> {
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      const out: RemoveResult = { removed: [], failed: [] };
      for (const ref of refs) {
        try {
          const n = this.findNetwork(s, ref);
          this.checkNetworkRemovable(s, n);
          await this.removeNetworkLocked(tx, s, n);
          out.removed.push(ref);
        } catch (err) {
          if (!(opts.force && err instanceof NotFoundError)) out.failed.push({ ref, error: err });
        }
      }
      return out;
    });
  }

  private checkNetworkRemovable(s: State, n: NetworkRecord): void {
    if (n.predefined) throw new ConflictError(`${n.name} is a pre-defined network and cannot be removed`);
    const eps = this.endpointsOf(s, (e) => e.networkId === n.id);
    if (eps.length) {
      const names = eps.map((e) => s.sandboxes[e.sandboxId]?.name ?? e.sandboxId.slice(0, 12));
      throw new ConflictError(`network ${n.name} has active endpoints (${names.join(', ')}): disconnect them first`);
    }
  }

  private async removeNetworkLocked(tx: StoreTx<State>, s: State, n: NetworkRecord): Promise<void> {
    n.phase = 'removing';
    tx.write(s);
    await faultPoint('network-rm:after-mark');
    const driver = this.d.drivers.get(n.driver);
    await runAll(`remove network ${n.name}`, [
      () => this.d.firewall.reconcile(this.desiredFirewall(s)),
      () => driver.deleteNetwork(n, this.ctx),
    ]);
    delete s.networks[n.id];
    tx.write(s);
  }

  async pruneNetworks(): Promise<string[]> {
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      const unused = Object.values(s.networks).filter((n) => !n.predefined && !this.endpointsOf(s, (e) => e.networkId === n.id).length);
      for (const n of unused) await this.removeNetworkLocked(tx, s, n);
      return unused.map((n) => n.name);
    });
  }

  // ---------------------------------------------------------------- endpoints

  async connect(netRef: string, sbxRef: string, opts: ConnectOptions = {}): Promise<EndpointRecord> {
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      const net = this.findNetwork(s, netRef);
      const sbx = this.findSandbox(s, sbxRef);
      return this.connectLocked(tx, s, net, sbx, opts);
    });
  }

  private async connectLocked(tx: StoreTx<State>, s: State, net: NetworkRecord, sbx: SandboxRecord, opts: ConnectOptions): Promise<EndpointRecord> {
    const mine = this.endpointsOf(s, (e) => e.sandboxId === sbx.id);
    if (mine.some((e) => e.networkId === net.id)) throw new AlreadyExistsError(`sandbox ${sbx.name} is already connected to network ${net.name}`);
    if (sbx.kind === 'container') throw new ConflictError(`sandbox ${sbx.name} shares the network namespace of another sandbox (container mode): it cannot be connected to networks`);
    const join: JoinContext = { sandbox: sbx, siblings: mine.map((e) => ({ endpoint: e, network: s.networks[e.networkId]! })).filter((x) => x.network) };
    const exclusive = join.siblings.find((x) => this.d.drivers.get(x.network.driver).exclusive);
    if (exclusive) throw new ConflictError(`sandbox ${sbx.name} is on the ${exclusive.network.name} network (driver ${exclusive.network.driver}): it cannot be connected to other networks`);
    const driver = this.d.drivers.get(net.driver);
    // Parse every port spec before anything is allocated or touched.
    const requests = [...(opts.publish ?? []).map(parsePortSpec), ...(opts.publishAll ? (opts.expose ?? []).map(parseExpose) : [])];
    const req: EndpointRequest = { ip: opts.ip, ip6: opts.ip6, ifname: opts.ifname, publishing: requests.length > 0 };
    driver.checkJoin(net, join, req);

    const id = this.hex();
    // Allocation mutates the subnets' usage maps; it all lands in one write below.
    const plan = driver.planEndpoint(net, id, join, req, this.d.random);
    const { defaultHostIP, ...fields } = plan;
    const ep: EndpointRecord = { id, networkId: net.id, sandboxId: sbx.id, phase: 'creating', ...fields };
    // A port without a host address takes the network's default (host_binding_ipv4), as in Docker.
    const portRequests = requests.map((r) => (r.hostIP === '' && defaultHostIP ? { ...r, hostIP: defaultHostIP } : r));
    if (portRequests.length) ep.ports = await this.allocatePorts(s, sbx, ep, portRequests);
    s.endpoints[id] = ep;
    tx.write(s);
    try {
      await faultPoint('connect:before-join');
      await this.withSandbox(s, sbx, (open) => this.d.drivers.get(net.driver).join(net, ep, open, this.ctx));
      await faultPoint('connect:after-join');
      // Bind before rules, rules before serving: the proxy takes the host ports (a port
      // another program grabbed since the probe fails here), NAT rules follow once the
      // container end exists, and only then does the proxy accept traffic.
      if (ep.ports?.length) {
        await this.syncProxy(s, false, ep);
        await this.d.firewall.reconcile(this.desiredFirewall(s));
        await this.syncProxy(s, true, ep);
      }
      await faultPoint('connect:after-ports');
    } catch (err) {
      await this.rollback(tx, s, `connect ${sbx.name} to ${net.name}`, err, async () => {
        await this.teardownEndpoint(s, ep);
        if (ep.ports?.length) {
          await this.d.firewall.reconcile(this.desiredFirewall(s));
          await this.syncProxy(s, true);
        }
      });
    }
    ep.phase = 'ready';
    tx.write(s);
    return ep;
  }

  async disconnect(netRef: string, sbxRef: string): Promise<void> {
    await this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      const net = this.findNetwork(s, netRef);
      const sbx = this.findSandbox(s, sbxRef);
      const ep = this.endpointsOf(s, (e) => e.networkId === net.id && e.sandboxId === sbx.id)[0];
      if (!ep) throw new NotFoundError(`sandbox ${sbx.name} is not connected to network ${net.name}`);
      ep.phase = 'removing';
      tx.write(s);
      await faultPoint('disconnect:after-mark');
      // Its port rules go first (desired state leaves out endpoints being removed).
      if (ep.ports?.length) {
        await this.d.firewall.reconcile(this.desiredFirewall(s));
        await this.syncProxy(s, true);
      }
      await this.teardownEndpoint(s, ep);
      tx.write(s);
      await this.electDefaultGateway(s, sbx);
    });
  }

  /**
   * After a disconnect: a family left without a default route gets one through another
   * network's gateway, as Docker re-elects the gateway endpoint (networks in name order).
   */
  private async electDefaultGateway(s: State, sbx: SandboxRecord): Promise<void> {
    if (sbx.kind === 'host' || !this.namespaceAlive(s, sbx)) return;
    const candidates = this.endpointsOf(s, (e) => e.sandboxId === sbx.id && e.phase !== 'removing' && Boolean(e.gateway4 || e.gateway6))
      .map((e) => ({ e, name: s.networks[e.networkId]?.name ?? '' }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((x) => x.e);
    if (!candidates.length) return;
    await this.withSandbox(s, sbx, async (open) => {
      const nl = this.d.sys.netlink(open.nsFd);
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
  private async teardownEndpoint(s: State, ep: EndpointRecord): Promise<void> {
    const net = s.networks[ep.networkId];
    const sbx = s.sandboxes[ep.sandboxId];
    if (net) {
      const driver = this.d.drivers.get(net.driver);
      const alive = sbx ? this.namespaceAlive(s, sbx) : false;
      if (alive && sbx) await this.withSandbox(s, sbx, (open) => driver.leave(net, ep, open, this.ctx));
      else await driver.leave(net, ep, undefined, this.ctx);
      releaseAddresses(net.subnets, ep.id);
    }
    delete s.endpoints[ep.id];
  }

  // ---------------------------------------------------------------- sandboxes

  async createSandbox(req: CreateSandboxRequest): Promise<SandboxRecord> {
    validateName(req.name, 'sandbox');
    if (req.netnsPath !== undefined && req.pid !== undefined) throw new InvalidConfigError('--netns and --pid cannot be used together');
    if (req.pid !== undefined && (!Number.isInteger(req.pid) || req.pid <= 0)) throw new InvalidConfigError(`--pid ${req.pid} is not a process id`);
    const network = req.network ?? 'bridge';
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      if (Object.values(s.sandboxes).some((x) => x.name === req.name)) throw new AlreadyExistsError(`sandbox with name ${req.name} already exists`);
      const id = this.hex();
      const pin = join(this.d.runDir, 'netns', req.name);
      let sbx: SandboxRecord;
      let net: NetworkRecord | undefined;
      if (isContainerMode(network)) {
        if (req.netnsPath || req.pid || req.ip || req.ip6 || req.ifname || req.publish?.length || req.publishAll) {
          throw new InvalidConfigError('container network mode takes no --netns, --pid, --ip, --ip6, --ifname or -p/-P (publish on the sandbox that owns the namespace)');
        }
        const target = this.findSandbox(s, network.slice(CONTAINER_PREFIX.length));
        const share = planShare(target, s);
        sbx = { id, name: req.name, kind: 'container', key: share.key, containerOf: target.id, phase: 'creating', created: now() };
      } else {
        net = this.findNetwork(s, network);
        if (net.driver === 'host') {
          if (req.netnsPath || req.pid) throw new InvalidConfigError('--network host uses the host namespace: --netns and --pid do not apply');
          sbx = { id, name: req.name, kind: 'host', key: pin, phase: 'creating', created: now() };
        } else if (req.netnsPath) {
          if (this.d.sys.netns.inode(req.netnsPath) === undefined) throw new NotFoundError(`${req.netnsPath} is not a network namespace`);
          this.checkAdoptable(s, req.netnsPath, `--netns ${req.netnsPath}`);
          sbx = { id, name: req.name, kind: 'path', key: req.netnsPath, phase: 'creating', created: now() };
        } else if (req.pid !== undefined) {
          if (this.d.sys.netns.inode(`/proc/${req.pid}/ns/net`) === undefined) throw new NotFoundError(`process ${req.pid} not found`);
          this.checkAdoptable(s, `/proc/${req.pid}/ns/net`, `the network namespace of --pid ${req.pid}`);
          sbx = { id, name: req.name, kind: 'pid', key: pin, pid: req.pid, phase: 'creating', created: now() };
        } else {
          sbx = { id, name: req.name, kind: 'named', key: pin, phase: 'creating', created: now() };
        }
      }
      s.sandboxes[id] = sbx;
      tx.write(s);
      try {
        if (sbx.kind === 'named') this.d.sys.netns.create(pin);
        else if (sbx.kind === 'pid') this.d.sys.netns.pin(`/proc/${req.pid}/ns/net`, pin);
        else if (sbx.kind === 'host') this.d.sys.netns.pin('/proc/self/ns/net', pin);
        await faultPoint('sandbox-create:after-netns');
        if (net) await this.connectLocked(tx, s, net, sbx, req);
      } catch (err) {
        await this.rollback(tx, s, `create sandbox ${req.name}`, err, () => this.teardownSandbox(s, sbx));
      }
      sbx.phase = 'ready';
      tx.write(s);
      return sbx;
    });
  }

  /**
   * An adopted namespace (--netns, --pid) must be neither tsnet's own (the host's:
   * an endpoint there would change the host's network; that is --network host) nor
   * one another sandbox already manages (that is --network container:NAME).
   */
  private checkAdoptable(s: State, path: string, what: string): void {
    const ino = this.d.sys.netns.inode(path);
    if (ino !== undefined && ino === this.d.sys.netns.inode('/proc/self/ns/net')) {
      throw new ConflictError(`${what} is the host's own network namespace (tsnet's): use --network host to work in it`);
    }
    const user = Object.values(s.sandboxes).find((x) => x.kind !== 'container' && x.kind !== 'host' && this.d.sys.netns.inode(x.key) === ino);
    if (user) throw new ConflictError(`${what} is already the namespace of sandbox ${user.name}: use --network container:${user.name} to share it`);
  }

  /**
   * Removes what can be removed (see removeNetworks). Sandboxes that share the
   * namespace of another one named in the same command go first, so
   * `sandbox rm web sidecar` works in either order.
   */
  async removeSandboxes(refs: string[], opts: { force?: boolean } = {}): Promise<RemoveResult> {
    return this.d.store.transact(async (tx) => {
      const s = await this.reconcileLocked(tx);
      const out: RemoveResult = { removed: [], failed: [] };
      const found: Array<{ ref: string; sbx: SandboxRecord }> = [];
      for (const ref of refs) {
        try {
          const sbx = this.findSandbox(s, ref);
          if (!found.some((f) => f.sbx.id === sbx.id)) found.push({ ref, sbx });
        } catch (err) {
          if (!(opts.force && err instanceof NotFoundError)) out.failed.push({ ref, error: err });
        }
      }
      // Dependants first: a sandbox sharing another's namespace before the one it shares.
      const depth = (x: SandboxRecord): number => (x.containerOf && s.sandboxes[x.containerOf] ? 1 + depth(s.sandboxes[x.containerOf]!) : 0);
      found.sort((a, b) => depth(b.sbx) - depth(a.sbx));
      for (const { ref, sbx: x } of found) {
        try {
          checkRemovable(x, s);
          x.phase = 'removing';
          for (const e of this.endpointsOf(s, (y) => y.sandboxId === x.id)) e.phase = 'removing';
          tx.write(s);
          await faultPoint('sandbox-rm:after-mark');
          await this.d.firewall.reconcile(this.desiredFirewall(s));
          await this.syncProxy(s, true);
          await this.teardownSandbox(s, x);
          tx.write(s);
          out.removed.push(ref);
        } catch (err) {
          out.failed.push({ ref, error: err });
        }
      }
      // In the order they were named.
      out.removed.sort((a, b) => refs.indexOf(a) - refs.indexOf(b));
      return out;
    });
  }

  /** Idempotent: disconnects every endpoint, unpins a namespace tsnet pinned, drops the record. */
  private async teardownSandbox(s: State, sbx: SandboxRecord): Promise<void> {
    await runAll(`remove sandbox ${sbx.name}`, [
      ...this.endpointsOf(s, (e) => e.sandboxId === sbx.id).map((e) => () => this.teardownEndpoint(s, e)),
      () => {
        if (sbx.kind === 'named' || sbx.kind === 'pid' || sbx.kind === 'host') this.d.sys.netns.remove(sbx.key);
      },
    ]);
    delete s.sandboxes[sbx.id];
  }

  private namespaceAlive(s: State, sbx: SandboxRecord): boolean {
    if (sbx.kind === 'container') {
      const owner = sbx.containerOf ? s.sandboxes[sbx.containerOf] : undefined;
      return Boolean(owner && owner.phase !== 'removing' && this.namespaceAlive(s, owner));
    }
    return this.d.sys.netns.inode(sbx.key) !== undefined;
  }

  private async withSandbox<T>(s: State, sbx: SandboxRecord, fn: (open: OpenSandbox) => Promise<T>): Promise<T> {
    if (!this.namespaceAlive(s, sbx)) throw new NotFoundError(`the network namespace of sandbox ${sbx.name} (${sbx.key}) is gone`);
    const fd = this.d.sys.netns.open(sbx.key);
    try {
      return await fn({ record: sbx, nsFd: fd });
    } finally {
      this.d.sys.netns.close(fd);
    }
  }

  // ---------------------------------------------------------------- reconcile

  /** Full reconcile now, including the sweep over every endpoint. */
  async reconcile(): Promise<State> {
    return this.d.store.transact((tx) => this.reconcileLocked(tx, { sweep: true }));
  }

  /** Undo a failed operation; a failed undo leaves the record for the next reconcile. */
  private async rollback(tx: StoreTx<State>, s: State, what: string, cause: unknown, undo: () => Promise<void>): Promise<never> {
    try {
      await undo();
      tx.write(s);
    } catch (undoErr) {
      this.d.log.error({ err: undoErr }, `${what}: rollback incomplete, the next command will finish it`);
    }
    throw cause;
  }

  private sweepMarkPath(): string {
    return join(this.d.runDir, 'sweep.mark');
  }

  /** Whether the O(endpoints) sweep is due: never done since boot, or done too long ago. */
  private sweepDue(): boolean {
    try {
      const m = JSON.parse(readFileSync(this.sweepMarkPath(), 'utf8')) as { boot: string; at: number };
      return m.boot !== bootId() || Date.now() - m.at >= (this.d.sweepIntervalMs ?? SWEEP_INTERVAL_MS) || Date.now() < m.at;
    } catch {
      return true;
    }
  }

  private async sweepLocked(s: State, attempt: (what: string, fn: () => Promise<unknown> | unknown) => Promise<void>, log: Logger): Promise<void> {
    let links = await this.hostLinkMap();
    let repaired = false;
    for (const ep of Object.values(s.endpoints)) {
      const n = s.networks[ep.networkId];
      const sbx = s.sandboxes[ep.sandboxId];
      if (!n || !sbx) continue;
      const driver = this.d.drivers.get(n.driver);
      if (driver.endpointPresent(n, ep, links)) continue;
      log.info({ endpoint: ep.id, network: n.name, sandbox: sbx.name }, 're-creating endpoint plumbing');
      repaired = true;
      await attempt(`endpoint ${ep.id}`, () =>
        this.withSandbox(s, sbx, async (open) => {
          await driver.leave(n, ep, open, this.ctx);
          await driver.join(n, ep, open, this.ctx);
        }),
      );
    }
    const owned = new Set<string>();
    for (const n of Object.values(s.networks)) {
      const eps = this.endpointsOf(s, (e) => e.networkId === n.id);
      for (const l of this.d.drivers.get(n.driver).ownedLinks(n, eps)) owned.add(l);
    }
    const tag = `tsnet:${this.d.instance}:`;
    if (repaired) links = await this.hostLinkMap();
    const nl = this.d.sys.netlink();
    try {
      for (const l of links.values()) {
        if (l.alias?.startsWith(tag) && !owned.has(l.name)) {
          log.info({ link: l.name, alias: l.alias }, 'removing leaked link');
          await attempt(`leaked link ${l.name}`, () => nl.deleteLink(l.index));
        }
      }
    } finally {
      nl.close();
    }
    const pins = new Set(Object.values(s.sandboxes).map((x) => x.key));
    const pinDir = join(this.d.runDir, 'netns');
    let entries: string[] = [];
    try {
      entries = readdirSync(pinDir);
    } catch {
      entries = [];
    }
    for (const e of entries) {
      const p = join(pinDir, e);
      if (!pins.has(p)) {
        log.info({ path: p }, 'removing leaked namespace pin');
        await attempt(`leaked namespace ${p}`, () => this.d.sys.netns.remove(p));
      }
    }
    mkdirSync(this.d.runDir, { recursive: true });
    writeFileSync(this.sweepMarkPath(), JSON.stringify({ boot: bootId(), at: Date.now() }));
  }

  private takenSubnets(s: State): Array<{ cidr: Cidr; network: string }> {
    return Object.values(s.networks).flatMap((n) => n.subnets.map((x) => ({ cidr: parseCidr(x.subnet) as Cidr, network: n.name })));
  }

  private async hostLinks(filter?: { kind?: string }): Promise<LinkInfo[]> {
    const nl = this.d.sys.netlink();
    try {
      return await nl.listLinks(filter);
    } finally {
      nl.close();
    }
  }

  private async hostLinkMap(): Promise<Map<string, LinkInfo>> {
    return new Map((await this.hostLinks()).map((l) => [l.name, l]));
  }

  /** Destinations of the host's IPv4 and IPv6 routes, but default routes and those of our own bridges. */
  private async hostRoutes(links: LinkInfo[], s: State): Promise<Cidr[]> {
    const ours = new Set(Object.values(s.networks).map((n) => n.bridge?.name).filter(Boolean));
    const ourIdx = new Set(links.filter((l) => ours.has(l.name)).map((l) => l.index));
    const nl = this.d.sys.netlink();
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

  private desiredFirewall(s: State): FwState {
    return desiredFirewall(s, (n: NetworkRecord) => this.d.drivers.get(n.driver).firewall(n), { proxy: Boolean(this.d.proxy) });
  }

  /**
   * Makes the proxy hold exactly the published ports. A port of `mine` (the
   * endpoint this command publishes) that cannot be held fails the command; other
   * lost ports (taken by another program while the proxy was down) are told to the
   * user, and the proxy keeps trying to take them back.
   */
  private async syncProxy(s: State, activate: boolean, mine?: EndpointRecord): Promise<void> {
    if (!this.d.proxy) return;
    const lost = await this.d.proxy.sync(proxyBindings(s), activate);
    for (const l of lost) {
      const owner = ownerOf(s, l.binding);
      const what = describe({ proto: l.binding.proto, hostIP: l.binding.hostIP, hostPort: l.binding.hostPort });
      if (mine && owner?.id === mine.id) {
        if (l.code === 'EADDRINUSE') throw new PortInUseError(`port ${what} is already in use by another program`);
        throw new SyscallError('bind', l.code, `the userland proxy cannot bind ${what}: ${l.code}`);
      }
      this.d.notice?.(lostMessage(s, l, owner));
    }
  }

  /** Published ports the userland proxy should hold and cannot, with their sandbox (for port and inspect). */
  async lostPorts(s: State): Promise<Array<{ endpointId?: string; text: string }>> {
    if (!this.d.proxy) return [];
    return (await this.d.proxy.lost()).map((l) => {
      const owner = ownerOf(s, l.binding);
      return { endpointId: owner?.id, text: lostMessage(s, l, owner) };
    });
  }

  /** Chooses host ports for an endpoint's requests (validation: nothing is touched yet). */
  private async allocatePorts(s: State, sbx: SandboxRecord, ep: EndpointRecord, reqs: PortRequest[]): Promise<PortBinding[]> {
    const published: Published[] = [];
    for (const e of Object.values(s.endpoints)) {
      for (const p of e.ports ?? []) published.push({ ...p, owner: s.sandboxes[e.sandboxId]?.name ?? e.sandboxId.slice(0, 12) });
    }
    const ephemeral = ephemeralRange(this.d.sys.sysctl.get('net.ipv4.ip_local_port_range'), this.d.sys.sysctl.get('net.ipv4.ip_local_reserved_ports'));
    const out: PortBinding[] = [];
    for (const r of reqs) {
      const fam = r.hostIP === '' ? 0 : r.hostIP.includes(':') ? 6 : 4;
      // A host address of the other family than the endpoint's is served by the userland proxy (as Docker does).
      const spec = `host address ${r.hostIP}`;
      if ((fam === 4 && !ep.ipv4) || (fam === 6 && !ep.ipv6)) {
        if (!this.d.proxy) {
          throw new InvalidConfigError(`sandbox ${sbx.name} has no IPv${fam} address on network ${s.networks[ep.networkId]?.name} for ${spec}, and without the userland proxy (TSNET_USERLAND_PROXY=false) nothing can serve it${fam === 6 ? ' (create the network with --ipv6)' : ''}`);
        }
        if (r.proto === 'sctp') throw new InvalidConfigError(`${spec}: SCTP is NAT only, and sandbox ${sbx.name} has no IPv${fam} address on this network`);
      }
      const b = await allocatePorts(r, { published, ephemeral, inUse: (proto, ip, port) => this.d.sys.portInUse(proto, ip, port) });
      out.push(b);
      published.push({ ...b, owner: sbx.name });
    }
    return out;
  }

  /** Every driver's predefined network (Docker's bridge, host and none), in registration order. */
  private async predefinedNetworks(s: State): Promise<NetworkRecord[]> {
    const out: NetworkRecord[] = [];
    for (const type of this.d.drivers.types()) {
      const p = this.d.drivers.get(type).predefined;
      if (!p) continue;
      const n = await this.planNetwork(s, { name: p.name, driver: type, options: { ...p.options } });
      out.push({ ...n, phase: 'ready', predefined: true });
    }
    return out;
  }

  /**
   * Brings kernel and store into agreement, holding the store lock:
   * operations a dead process left in flight are finished or undone, sandboxes
   * whose namespace is gone are dropped, missing bridges and veths are re-created,
   * tsnet-tagged links and namespace pins nobody owns are removed, and the
   * firewall is rewritten if it differs from what the networks need.
   */
  private async reconcileLocked(tx: StoreTx<State>, opts: { sweep?: boolean; readOnly?: boolean } = {}): Promise<State> {
    const s = tx.state;
    const log = this.d.log.child({ component: 'reconcile' });
    let dirty = false;
    const problems: unknown[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, `reconcile: ${what} failed`);
        problems.push(err);
      }
    };

    if (!Object.values(s.networks).some((n) => n.predefined)) {
      for (const n of await this.predefinedNetworks(s)) s.networks[n.id] = n;
      dirty = true;
    }

    // 0. The firewall backend changed (--firewall, or what auto found): a changing command moves
    //    the rules over (and says so); a read keeps using the backend that programmed the kernel.
    let fw = this.d.firewall;
    if (s.firewall !== undefined && s.firewall !== this.d.firewall.name && opts.readOnly && this.d.firewallOf) {
      fw = this.d.firewallOf(s.firewall);
    } else if (s.firewall !== this.d.firewall.name) {
      const old = s.firewall;
      if (old && this.d.firewallOf) {
        this.d.notice?.(`firewall backend changed from ${old} to ${this.d.firewall.name}: ${old === 'none' ? 'programming' : `moving tsnet's rules from ${old} to`} ${this.d.firewall.name === 'none' ? 'none (no masquerade, isolation or NAT from now on)' : this.d.firewall.name}`);
        if (old !== 'none') await attempt(`removing ${old} rules`, () => this.d.firewallOf!(old).removeAll());
      }
      s.firewall = this.d.firewall.name;
      dirty = true;
    }

    // 1. Operations in flight when their process died: undo creations, finish removals.
    for (const ep of Object.values(s.endpoints).filter((e) => e.phase !== 'ready')) {
      log.info({ endpoint: ep.id, phase: ep.phase }, 'finishing interrupted endpoint operation');
      await attempt(`endpoint ${ep.id}`, () => this.teardownEndpoint(s, ep));
      dirty = true;
    }
    for (const sbx of Object.values(s.sandboxes).filter((x) => x.phase !== 'ready')) {
      log.info({ sandbox: sbx.name, phase: sbx.phase }, 'finishing interrupted sandbox operation');
      await attempt(`sandbox ${sbx.name}`, () => this.teardownSandbox(s, sbx));
      dirty = true;
    }
    for (const n of Object.values(s.networks).filter((x) => x.phase !== 'ready')) {
      log.info({ network: n.name, phase: n.phase }, 'finishing interrupted network operation');
      await attempt(`network ${n.name}`, async () => {
        for (const e of this.endpointsOf(s, (x) => x.networkId === n.id)) await this.teardownEndpoint(s, e);
        await this.d.drivers.get(n.driver).deleteNetwork(n, this.ctx);
        delete s.networks[n.id];
      });
      dirty = true;
    }

    // 2. Sandboxes whose namespace has disappeared (process exited, netns deleted by hand).
    for (const sbx of Object.values(s.sandboxes)) {
      if (this.namespaceAlive(s, sbx)) continue;
      log.info({ sandbox: sbx.name, key: sbx.key }, 'sandbox namespace is gone: releasing its endpoints');
      await attempt(`dead sandbox ${sbx.name}`, () => this.teardownSandbox(s, sbx));
      dirty = true;
    }
    if (dirty) tx.write(s);

    // 3. Kernel objects. Bridges are checked every time (one kernel-filtered dump,
    //    O(networks)); the sweep over every endpoint's veth, leaked links and pins
    //    is O(endpoints), so it runs when there is reason to: after a boot, when
    //    anything above was repaired, on `system reconcile`, or when the last
    //    sweep is older than SWEEP_INTERVAL_MS.
    const bridges = new Map((await this.hostLinks({ kind: 'bridge' })).map((l) => [l.name, l]));
    let repaired = dirty;
    for (const n of Object.values(s.networks)) {
      const driver = this.d.drivers.get(n.driver);
      if (!driver.networkPresent(n, bridges)) {
        log.info({ network: n.name }, 're-creating network objects');
        await attempt(`network ${n.name}`, () => driver.ensureNetwork(n, this.ctx));
        repaired = true;
      } else if (driver.ensureSettings) {
        await attempt(`settings of network ${n.name}`, () => driver.ensureSettings!(n, this.ctx));
      }
    }
    if (opts.sweep || repaired || this.sweepDue()) await this.sweepLocked(s, attempt, log);

    // 4. Firewall: one transaction, only if something differs. Then the proxy holds
    //    exactly the published ports (started again if it died).
    const fwResult = await fw.reconcile(this.desiredFirewall(s));
    if (fwResult.changed) log.info('firewall rules restored');
    await attempt('userland proxy', () => this.syncProxy(s, true));
    if (problems.length) log.warn({ count: problems.length }, 'reconcile finished with problems');
    return s;
  }
}
