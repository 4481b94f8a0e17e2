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
import { availableParallelism } from 'node:os';
import { ImageStore } from '../runtime/images/store.js';
import { Runtime } from '../runtime/containers.js';
import { CgroupManager } from '../runtime/cgroups.js';
import { LocalContainers, LocalImages } from '../api/runtime.js';
import { RealLayerFs } from '../system/real/layerfs.js';
import { RegistryClient, dockerCredentials, isLoopbackHost } from '../runtime/images/registry.js';
import { nativeProgram, repoFile } from '../system/real/addon.js';

export type FirewallChoice = 'auto' | 'iptables' | 'nftables' | 'none';

export interface Settings {
  root: string;
  runDir: string;
  firewall: FirewallChoice;
  /** Seconds a full reconcile sweep stays fresh (TSNET_SWEEP_INTERVAL; 0 = every command). */
  sweepIntervalSec?: number;
  /** Run the userland proxy for published ports (TSNET_USERLAND_PROXY=false turns it off). */
  userlandProxy?: boolean;
  /** The cgroup containers get theirs under (TSNET_CGROUP_PARENT, default tsnet; --cgroup-parent per container). */
  cgroupParent?: string;
  /** Registries pulled from over plain HTTP when HTTPS fails (TSNET_INSECURE_REGISTRIES, comma-separated host[:port]); loopback ones always are. */
  insecureRegistries?: string[];
  /** Where HOST[:PORT]/ca.crt for registries are looked up (TSNET_CERTS_D, colon-separated; default /etc/tsnet/certs.d then /etc/docker/certs.d). */
  certsDirs?: string[];
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
    cgroupParent: env.TSNET_CGROUP_PARENT || undefined,
    insecureRegistries: (env.TSNET_INSECURE_REGISTRIES ?? '').split(',').map((x) => x.trim()).filter(Boolean),
    certsDirs: env.TSNET_CERTS_D ? env.TSNET_CERTS_D.split(':').filter(Boolean) : ['/etc/tsnet/certs.d', '/etc/docker/certs.d'],
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
  runtime: Runtime;
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
  const view = { proxy: settings.userlandProxy !== false };
  const images = new ImageStore({ root, files: sys.files, locks: sys.locks, layerFs: (dir) => new RealLayerFs(dir), log: log.child({ component: 'images' }) });
  const cli = repoFile(join('bin', 'tsnet.js'));
  const runtime = new Runtime({
    root, runDir, files: sys.files, locks: sys.locks, mounts: sys.mounts, images, controller,
    cgroups: new CgroupManager(sys.files),
    monitorBin: nativeProgram('tsnet-monitor'),
    initBin: nativeProgram('tsnet-init'),
    // The monitor's last act: the same tsnet, on the same state, records the exit and cleans up.
    cleanupArgv: (id) => [process.execPath, cli ?? 'tsnet', '--root', root, '--run-dir', runDir, '--firewall', settings.firewall, 'container', 'cleanup', id],
    random: (n) => randomBytes(n),
    log: log.child({ component: 'runtime' }),
    ncpu: availableParallelism(),
    cgroupParent: settings.cgroupParent,
  });
  const inUse = async () => {
    const s = await runtime.snapshot();
    return (id: string) => Object.values(s.containers).find((c) => c.image === id)?.name;
  };
  const registry = (insecure: boolean) => new RegistryClient({
    insecure: (host) => insecure || isLoopbackHost(host) || (settings.insecureRegistries ?? []).includes(host),
    certsDirs: settings.certsDirs ?? [],
    credentials: dockerCredentials(),
  });
  const api = new LocalApi(controller, view, new LocalContainers(runtime, images, controller, view), new LocalImages(images, inUse, registry));
  return { api, controller, runtime, sys, store, settings: { ...settings, root, runDir } };
}
