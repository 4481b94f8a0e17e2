// The composition root: the only place that builds object graphs. Every entry
// point gets its graph here: the CLI (and next the engine) from compose(), the
// CNI plugins and their server from ./cni.ts, the userland proxy from ./proxy.ts
// (separate modules so a process loads only what it runs). Nothing else
// constructs backends, drivers or kernels.
import { createHash, randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Logger } from '../log.js';
import type { Kernel } from '../system/kernel.js';
import { createRealSystem } from '../system/real/index.js';
import { Store } from '../store/store.js';
import { emptyState, parseState, type State } from '../controller/model.js';
import { Controller } from '../controller/controller.js';
import type { Api } from '../api/api.js';
import { LocalApi } from '../api/local.js';
import { DriverRegistry } from '../driverapi/driver.js';
import { NullDriver } from '../../drivers/null/index.js';
import { HostDriver } from '../../drivers/host/index.js';
import { BridgeDriver } from '../../drivers/bridge/index.js';
import { NoFirewall, type FirewallBackend } from '../firewall/backend.js';
import { IptablesBackend } from '../firewall/iptables/backend.js';
import { NftablesBackend } from '../firewall/nftables/backend.js';
import { GenerationMark } from '../firewall/mark.js';
import { ProxyClient } from '../portmapper/proxy/client.js';
import { InvalidConfigError } from '../errors.js';

export type FirewallChoice = 'auto' | 'iptables' | 'nftables' | 'none';

export interface Settings {
  root: string;
  runDir: string;
  firewall: FirewallChoice;
  /** Seconds a full reconcile sweep stays fresh (TSNET_SWEEP_INTERVAL; 0 = every command). */
  sweepIntervalSec?: number;
  /** Run the userland proxy for published ports (TSNET_USERLAND_PROXY=false turns it off). */
  userlandProxy?: boolean;
  /** Where messages the user must see go (the CLI: stderr). */
  notice?: (message: string) => void;
}

export function defaultSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  return {
    root: env.TSNET_ROOT || '/var/lib/tsnet',
    runDir: env.TSNET_RUN || '/run/tsnet',
    firewall: (env.TSNET_FIREWALL as FirewallChoice) || 'auto',
    sweepIntervalSec: parseSweep(env.TSNET_SWEEP_INTERVAL),
    userlandProxy: env.TSNET_USERLAND_PROXY !== 'false' && env.TSNET_USERLAND_PROXY !== '0',
  };
}

function parseSweep(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new InvalidConfigError(`TSNET_SWEEP_INTERVAL="${v}" must be a whole number of seconds`);
  return Number(v);
}

export function chooseFirewall(choice: FirewallChoice, sys: Kernel, log: Logger, runDir: string): FirewallBackend {
  const fwLog = log.child({ component: 'firewall' });
  const mark = (name: string) => new GenerationMark(name, () => sys.firewallGeneration(), { files: sys.files, path: join(runDir, 'firewall.mark') });
  const iptables = () => new IptablesBackend(sys.exec, fwLog, mark('iptables'));
  const nftables = () => new NftablesBackend(sys.exec, fwLog, mark('nftables'));
  switch (choice) {
    case 'iptables':
      return iptables();
    case 'nftables':
      return nftables();
    case 'none':
      return new NoFirewall();
    case 'auto':
      // iptables first (what Docker users expect to see, TSNET-USER included), nftables otherwise.
      if (sys.exec.which('iptables-restore') && sys.exec.which('iptables-save')) return iptables();
      if (sys.exec.which('nft')) return nftables();
      log.warn('neither iptables nor nft found: running without firewall rules (no masquerade, isolation or port mapping); install iptables or nftables');
      return new NoFirewall();
    default:
      throw new InvalidConfigError(`unknown firewall backend "${String(choice)}" (use iptables, nftables, none or auto)`);
  }
}

/** Instance tag: links carry it so that two tsnet roots on one host never reclaim each other's objects. */
export const instanceTag = (root: string) => createHash('sha256').update(resolve(root)).digest('hex').slice(0, 8);

export interface Composed {
  /** What front ends use. */
  api: Api;
  controller: Controller;
  sys: Kernel;
  store: Store<State>;
  settings: Settings;
}

export function compose(settings: Settings, log: Logger, sys: Kernel = createRealSystem(log)): Composed {
  const root = resolve(settings.root);
  const runDir = resolve(settings.runDir);
  const instance = instanceTag(root);
  const store = new Store<State>(root, emptyState, log.child({ component: 'store' }), { validate: parseState, kernel: sys });
  const drivers = new DriverRegistry().register(new BridgeDriver(instance)).register(new HostDriver()).register(new NullDriver());
  const firewall = chooseFirewall(settings.firewall, sys, log, runDir);
  const controller = new Controller({
    store, sys, firewall, drivers, log, runDir, instance,
    random: (n) => randomBytes(n),
    sweepIntervalMs: settings.sweepIntervalSec === undefined ? undefined : settings.sweepIntervalSec * 1000,
    proxy: settings.userlandProxy === false ? undefined : new ProxyClient(runDir, log.child({ component: 'proxy' })),
    firewallOf: (name) => chooseFirewall(name, sys, log, runDir),
    notice: settings.notice,
  });
  const api = new LocalApi(controller, { proxy: settings.userlandProxy !== false });
  return { api, controller, sys, store, settings: { ...settings, root, runDir } };
}
