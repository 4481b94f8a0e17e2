// The CNI side of the composition root: the plugins over one kernel and the run
// directory (TSNET_RUN), and the whole life of a plugin executable.
import { resolve } from 'node:path';
import type { Logger } from '../log.js';
import type { Kernel } from '../system/kernel.js';
import { createRealSystem } from '../system/real/index.js';
import { pluginMain, type CniPlugin } from '../cni/skel.js';
import { DEFAULT_RUN_DIR, type CniHost } from '../cni/rules.js';
import { bridgePlugin } from '../cni/bridge.js';
import { portmapPlugin } from '../cni/portmap.js';
import { loopbackPlugin } from '../cni/loopback.js';
import { ipamPlugin } from '../cni/ipam.js';
import { entryLogger } from './logger.js';

export const CNI_PLUGINS = ['tsnet-bridge', 'tsnet-portmap', 'tsnet-loopback', 'tsnet-ipam'] as const;
export type CniPluginName = (typeof CNI_PLUGINS)[number];

/** The CNI plugins, by executable name. The kernel is made on first use (VERSION needs none). */
export function composeCni(log: Logger, env: NodeJS.ProcessEnv = process.env, sys?: Kernel): Record<CniPluginName, () => CniPlugin> {
  let kernel = sys;
  const host = (): CniHost => ({ sys: (kernel ??= createRealSystem(log)), runDir: resolve(env.TSNET_RUN || DEFAULT_RUN_DIR), log });
  return {
    'tsnet-bridge': () => bridgePlugin(host()),
    'tsnet-portmap': () => portmapPlugin(host()),
    'tsnet-loopback': () => loopbackPlugin(host().sys),
    'tsnet-ipam': () => ipamPlugin(host()),
  };
}

/**
 * A plugin executable run directly (no server answered): one invocation, then
 * exit. Logs only when TSNET_LOG_LEVEL asks, and only on stderr.
 */
export async function runCniPlugin(name: CniPluginName, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const log = entryLogger(name, env.TSNET_LOG_LEVEL, 'silent');
  await pluginMain(composeCni(log, env)[name]());
}
