// The userland proxy's part of the composition root: the relay and its logger.
// The process around it (lock, control socket, saved bindings) is its main.
import { relayAddon } from '../system/real/addon.js';
import { UserlandProxy } from '../portmapper/proxy/server.js';
import type { Logger } from '../log.js';
import { entryLogger } from './logger.js';

export interface ProxySettings {
  udpIdleMs: number;
  /** TCP through the native splice relay, or through node streams (TSNET_PROXY_TCP=streams). */
  tcp: 'splice' | 'streams';
}

export function proxySettings(env: NodeJS.ProcessEnv, udpIdleArg: string | undefined): ProxySettings {
  const idle = Number(udpIdleArg ?? 30000);
  return { udpIdleMs: Number.isFinite(idle) && idle > 0 ? idle : 30000, tcp: env.TSNET_PROXY_TCP === 'streams' ? 'streams' : 'splice' };
}

/** Its log goes to RUN/proxy.log (its stderr): info by default, TSNET_PROXY_LOG_LEVEL to change it. */
export function composeProxy(settings: ProxySettings, env: NodeJS.ProcessEnv = process.env): { proxy: UserlandProxy; log: Logger } {
  const log = entryLogger('tsnet-proxy', env.TSNET_PROXY_LOG_LEVEL, 'info');
  return { log, proxy: new UserlandProxy(relayAddon(), { ...settings, log: log.child({ component: 'relay' }) }) };
}
