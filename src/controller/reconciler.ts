// The Reconciler brings kernel and store into agreement, holding the store lock.
// Every changing command runs it first today; the engine will also run it on a
// timer and on netlink events. It finishes or undoes what dead processes left in
// flight, drops sandboxes whose namespace is gone, re-creates missing bridges and
// veths, removes tsnet-tagged links and namespace pins nobody owns, and rewrites
// the firewall if it differs from what the networks need.
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { StoreTx } from '../store/store.js';
import type { State } from './model.js';
import type { Core } from './core.js';
import type { Publisher } from './publish.js';
import type { Networks } from './networks.js';
import type { Endpoints } from './endpoints.js';
import type { Sandboxes } from './sandboxes.js';
import type { FileOps } from '../system/kernel.js';

/** How long a full sweep of endpoints and leaked objects stays fresh for ordinary commands. */
export const SWEEP_INTERVAL_MS = 30_000;

function bootId(files: FileOps): string {
  try {
    return files.read('/proc/sys/kernel/random/boot_id')?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

type Attempt = (what: string, fn: () => Promise<unknown> | unknown) => Promise<void>;

export interface ReconcileOptions {
  /** Sweep every endpoint and leaked object now, whatever the mark says. */
  sweep?: boolean;
  /** A read: never moves rules to another firewall backend. */
  readOnly?: boolean;
}

export class Reconciler {
  constructor(
    private readonly core: Core,
    private readonly publish: Publisher,
    private readonly networks: Networks,
    private readonly endpoints: Endpoints,
    private readonly sandboxes: Sandboxes,
  ) {}

  async run(tx: StoreTx<State>, opts: ReconcileOptions = {}): Promise<State> {
    const { d } = this.core;
    const s = tx.state;
    const log = d.log.child({ component: 'reconcile' });
    let dirty = false;
    const problems: unknown[] = [];
    const attempt: Attempt = async (what, fn) => {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, `reconcile: ${what} failed`);
        problems.push(err);
      }
    };

    if (!Object.values(s.networks).some((n) => n.predefined)) {
      for (const n of await this.networks.predefined(s)) s.networks[n.id] = n;
      dirty = true;
    }

    // 0. The firewall backend changed (--firewall, or what auto found): a changing command moves
    //    the rules over (and says so); a read keeps using the backend that programmed the kernel.
    let fw = d.firewall;
    if (s.firewall !== undefined && s.firewall !== d.firewall.name && opts.readOnly && d.firewallOf) {
      fw = d.firewallOf(s.firewall);
    } else if (s.firewall !== d.firewall.name) {
      const old = s.firewall;
      if (old && d.firewallOf) {
        d.notice?.(`firewall backend changed from ${old} to ${d.firewall.name}: ${old === 'none' ? 'programming' : `moving tsnet's rules from ${old} to`} ${d.firewall.name === 'none' ? 'none (no masquerade, isolation or NAT from now on)' : d.firewall.name}`);
        if (old !== 'none') await attempt(`removing ${old} rules`, () => d.firewallOf!(old).removeAll());
      }
      s.firewall = d.firewall.name;
      dirty = true;
    }

    // 1. Operations in flight when their process died: undo creations, finish removals.
    for (const ep of Object.values(s.endpoints).filter((e) => e.phase !== 'ready')) {
      log.info({ endpoint: ep.id, phase: ep.phase }, 'finishing interrupted endpoint operation');
      await attempt(`endpoint ${ep.id}`, () => this.endpoints.teardown(s, ep));
      dirty = true;
    }
    for (const sbx of Object.values(s.sandboxes).filter((x) => x.phase !== 'ready')) {
      log.info({ sandbox: sbx.name, phase: sbx.phase }, 'finishing interrupted sandbox operation');
      await attempt(`sandbox ${sbx.name}`, () => this.sandboxes.teardown(s, sbx));
      dirty = true;
    }
    for (const n of Object.values(s.networks).filter((x) => x.phase !== 'ready')) {
      log.info({ network: n.name, phase: n.phase }, 'finishing interrupted network operation');
      await attempt(`network ${n.name}`, () => this.networks.teardown(s, n));
      dirty = true;
    }

    // 2. Sandboxes whose namespace has disappeared (process exited, netns deleted by hand).
    for (const sbx of Object.values(s.sandboxes)) {
      if (this.core.namespaceAlive(s, sbx)) continue;
      log.info({ sandbox: sbx.name, key: sbx.key }, 'sandbox namespace is gone: releasing its endpoints');
      await attempt(`dead sandbox ${sbx.name}`, () => this.sandboxes.teardown(s, sbx));
      dirty = true;
    }
    if (dirty) tx.write(s);

    // 3. Kernel objects. Bridges are checked every time (one kernel-filtered dump,
    //    O(networks)); the sweep over every endpoint's veth, leaked links and pins
    //    is O(endpoints), so it runs when there is reason to: after a boot, when
    //    anything above was repaired, on `system reconcile`, or when the last
    //    sweep is older than SWEEP_INTERVAL_MS.
    const bridges = await this.core.hostLinkMap({ kind: 'bridge' });
    let repaired = dirty;
    for (const n of Object.values(s.networks)) {
      const driver = this.core.driverOf(n);
      if (!driver.networkPresent(n, bridges)) {
        log.info({ network: n.name }, 're-creating network objects');
        await attempt(`network ${n.name}`, () => driver.ensureNetwork(n, this.core.ctx));
        repaired = true;
      } else if (driver.ensureSettings) {
        await attempt(`settings of network ${n.name}`, () => driver.ensureSettings!(n, this.core.ctx));
      }
    }
    if (opts.sweep || repaired || this.sweepDue()) await this.sweep(s, attempt, log);

    // 4. Firewall: one transaction, only if something differs. Then the proxy holds
    //    exactly the published ports (started again if it died).
    const fwResult = await this.publish.firewall(s, fw);
    if (fwResult.changed) log.info('firewall rules restored');
    await attempt('userland proxy', () => this.publish.proxy(s, true));
    if (problems.length) log.warn({ count: problems.length }, 'reconcile finished with problems');
    return s;
  }

  private markPath(): string {
    return join(this.core.d.runDir, 'sweep.mark');
  }

  /** Whether the O(endpoints) sweep is due: never done since boot, or done too long ago. */
  private sweepDue(): boolean {
    const { files } = this.core.d.sys;
    try {
      const m = JSON.parse(files.read(this.markPath()) ?? 'null') as { boot: string; at: number } | null;
      if (!m) return true;
      return m.boot !== bootId(files) || Date.now() - m.at >= (this.core.d.sweepIntervalMs ?? SWEEP_INTERVAL_MS) || Date.now() < m.at;
    } catch {
      return true;
    }
  }

  /** Re-plumbs endpoints whose host side is missing; removes leaked tagged links and namespace pins. */
  private async sweep(s: State, attempt: Attempt, log: Logger): Promise<void> {
    const { core } = this;
    let links = await core.hostLinkMap();
    let repaired = false;
    for (const ep of Object.values(s.endpoints)) {
      const n = s.networks[ep.networkId];
      const sbx = s.sandboxes[ep.sandboxId];
      if (!n || !sbx) continue;
      const driver = core.driverOf(n);
      if (driver.endpointPresent(n, ep, links)) continue;
      log.info({ endpoint: ep.id, network: n.name, sandbox: sbx.name }, 're-creating endpoint plumbing');
      repaired = true;
      await attempt(`endpoint ${ep.id}`, () =>
        core.withSandbox(s, sbx, async (open) => {
          await driver.leave(n, ep, open, core.ctx);
          await driver.join(n, ep, open, core.ctx);
        }),
      );
    }
    const owned = new Set<string>();
    for (const n of Object.values(s.networks)) {
      const eps = core.endpointsOf(s, (e) => e.networkId === n.id);
      for (const l of core.driverOf(n).ownedLinks(n, eps)) owned.add(l);
    }
    const tag = `tsnet:${core.d.instance}:`;
    if (repaired) links = await core.hostLinkMap();
    const nl = core.d.sys.netlink();
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
    const pinDir = join(core.d.runDir, 'netns');
    for (const e of core.d.sys.files.list(pinDir)) {
      const p = join(pinDir, e);
      if (!pins.has(p)) {
        log.info({ path: p }, 'removing leaked namespace pin');
        await attempt(`leaked namespace ${p}`, () => core.d.sys.netns.remove(p));
      }
    }
    core.d.sys.files.mkdir(core.d.runDir);
    // A torn mark fails to parse, and that only means "sweep due": no replace needed.
    core.d.sys.files.write(this.markPath(), JSON.stringify({ boot: bootId(core.d.sys.files), at: Date.now() }));
  }
}
