// What every part of the controller shares: its dependencies, the drivers'
// context, and the few kernel reads and idioms they all use (a sandbox's
// namespace opened for one operation, the host's links, a rollback that never
// hides the original failure).
import type { Logger } from '../log.js';
import type { Store, StoreTx } from '../store/store.js';
import type { LinkInfo, Kernel } from '../system/kernel.js';
import type { FirewallBackend } from '../firewall/backend.js';
import type { ProxyPort } from '../portmapper/proxy/client.js';
import type { DriverContext, DriverRegistry, NetworkDriver, OpenSandbox } from '../driverapi/driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, State } from './model.js';
import { NotFoundError } from '../errors.js';

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

export const now = () => new Date().toISOString();

export class Core {
  readonly ctx: DriverContext;
  constructor(readonly d: ControllerDeps) {
    this.ctx = { sys: d.sys, log: d.log.child({ component: 'driver' }), localhostNat: !d.proxy };
  }

  /** A fresh id (64 hex digits by default). */
  hex(bytes = 32): string {
    return this.d.random(bytes).toString('hex');
  }

  driverOf(n: NetworkRecord): NetworkDriver {
    return this.d.drivers.get(n.driver);
  }

  endpointsOf(s: State, pred: (e: EndpointRecord) => boolean): EndpointRecord[] {
    return Object.values(s.endpoints).filter(pred);
  }

  /** Whether the sandbox's namespace still exists (a container-mode one: its owner's, unless being removed). */
  namespaceAlive(s: State, sbx: SandboxRecord): boolean {
    if (sbx.kind === 'container') {
      const owner = sbx.containerOf ? s.sandboxes[sbx.containerOf] : undefined;
      return Boolean(owner && owner.phase !== 'removing' && this.namespaceAlive(s, owner));
    }
    return this.d.sys.netns.inode(sbx.key) !== undefined;
  }

  /** Runs fn with the sandbox's namespace open; NotFoundError when it is gone. */
  async withSandbox<T>(s: State, sbx: SandboxRecord, fn: (open: OpenSandbox) => Promise<T>): Promise<T> {
    if (!this.namespaceAlive(s, sbx)) throw new NotFoundError(`the network namespace of sandbox ${sbx.name} (${sbx.key}) is gone`);
    const fd = this.d.sys.netns.open(sbx.key);
    try {
      return await fn({ record: sbx, nsFd: fd });
    } finally {
      this.d.sys.netns.close(fd);
    }
  }

  async hostLinks(filter?: { kind?: string }): Promise<LinkInfo[]> {
    const nl = this.d.sys.netlink();
    try {
      return await nl.listLinks(filter);
    } finally {
      nl.close();
    }
  }

  async hostLinkMap(filter?: { kind?: string }): Promise<Map<string, LinkInfo>> {
    return new Map((await this.hostLinks(filter)).map((l) => [l.name, l]));
  }

  /** Undoes a failed operation and rethrows its failure; a failed undo is logged and left to the next reconcile. */
  async rollback(tx: StoreTx<State>, s: State, what: string, cause: unknown, undo: () => Promise<void>): Promise<never> {
    try {
      await undo();
      tx.write(s);
    } catch (undoErr) {
      this.d.log.error({ err: undoErr }, `${what}: rollback incomplete, the next command will finish it`);
    }
    throw cause;
  }
}
