// The controller facade: one store transaction per public call. Each call runs the
// Reconciler first (so a command always starts from a kernel that matches the
// record), then the part that owns the job: Networks, Endpoints, Sandboxes, with
// Publisher keeping the firewall and the userland proxy in step. The projections
// of state into firewall and proxy wants are pure (desired.ts).
import type { StoreTx } from '../store/store.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from './model.js';
import { Core, type ControllerDeps } from './core.js';
import { Publisher } from './publish.js';
import { Endpoints } from './endpoints.js';
import { Sandboxes, validateSandboxRequest } from './sandboxes.js';
import { Networks, validateNetworkRequest } from './networks.js';
import { Reconciler } from './reconciler.js';
import type { ConnectOptions, CreateNetworkRequest, CreateSandboxRequest, RemoveResult } from './requests.js';

export type { ControllerDeps } from './core.js';
export type { ConnectOptions, CreateNetworkRequest, CreateSandboxRequest, RemoveResult } from './requests.js';
export { SWEEP_INTERVAL_MS } from './reconciler.js';

export class Controller {
  private readonly core: Core;
  private readonly publish: Publisher;
  private readonly networks: Networks;
  private readonly endpoints: Endpoints;
  private readonly sandboxes: Sandboxes;
  /** Run first by every changing call; the engine also schedules it (timer, netlink events). */
  readonly reconciler: Reconciler;

  constructor(private readonly d: ControllerDeps) {
    this.core = new Core(d);
    this.publish = new Publisher(this.core);
    this.endpoints = new Endpoints(this.core, this.publish);
    this.sandboxes = new Sandboxes(this.core, this.publish, this.endpoints);
    this.networks = new Networks(this.core, this.publish, this.endpoints);
    this.reconciler = new Reconciler(this.core, this.publish, this.networks, this.endpoints, this.sandboxes);
  }

  /** Reconciles first, then runs fn on the state, all under the store lock. */
  private change<T>(fn: (tx: StoreTx<State>, s: State) => Promise<T>): Promise<T> {
    return this.d.store.transact(async (tx) => fn(tx, await this.reconciler.run(tx)));
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
    return this.d.store.transact((tx) => this.reconciler.run(tx, { readOnly: true }));
  }

  findNetwork(s: State, ref: string): NetworkRecord {
    return this.networks.find(s, ref);
  }

  findSandbox(s: State, ref: string): SandboxRecord {
    return this.sandboxes.find(s, ref);
  }

  endpointsOf(s: State, pred: (e: EndpointRecord) => boolean): EndpointRecord[] {
    return this.core.endpointsOf(s, pred);
  }

  /** Published ports the userland proxy should hold and cannot, with their endpoint. */
  lostPorts(s: State): Promise<Array<{ endpointId?: string; text: string }>> {
    return this.publish.lost(s);
  }

  // ---------------------------------------------------------------- changing

  createNetwork(req: CreateNetworkRequest): Promise<NetworkRecord> {
    validateNetworkRequest(req);
    return this.change((tx, s) => this.networks.create(tx, s, req));
  }

  /** Docker's multi-argument rm: each name on its own; force: a missing name is no failure. */
  removeNetworks(refs: string[], opts: { force?: boolean } = {}): Promise<RemoveResult> {
    return this.change((tx, s) => this.networks.remove(tx, s, refs, opts));
  }

  pruneNetworks(): Promise<string[]> {
    return this.change((tx, s) => this.networks.prune(tx, s));
  }

  connect(netRef: string, sbxRef: string, opts: ConnectOptions = {}): Promise<EndpointRecord> {
    return this.change((tx, s) => this.endpoints.connect(tx, s, this.networks.find(s, netRef), this.sandboxes.find(s, sbxRef), opts));
  }

  disconnect(netRef: string, sbxRef: string): Promise<void> {
    return this.change((tx, s) => this.endpoints.disconnect(tx, s, this.networks.find(s, netRef), this.sandboxes.find(s, sbxRef)));
  }

  createSandbox(req: CreateSandboxRequest): Promise<SandboxRecord> {
    validateSandboxRequest(req);
    return this.change((tx, s) => this.sandboxes.create(tx, s, req, (ref) => this.networks.find(s, ref)));
  }

  removeSandboxes(refs: string[], opts: { force?: boolean } = {}): Promise<RemoveResult> {
    return this.change((tx, s) => this.sandboxes.remove(tx, s, refs, opts));
  }

  /** Full reconcile now, including the sweep over every endpoint. */
  reconcile(): Promise<State> {
    return this.d.store.transact((tx) => this.reconciler.run(tx, { sweep: true }));
  }
}
