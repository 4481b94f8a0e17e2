// Docker-compatible options of the bridge driver (pure parsing and validation).
import { InvalidConfigError } from '../../src/errors.js';
import { formatIp, parseIp } from '../../src/ipam/addr.js';
import { parseMtu, validateIfname } from '../../src/plumbing/names.js';

export const OPT = {
  NAME: 'com.docker.network.bridge.name',
  ICC: 'com.docker.network.bridge.enable_icc',
  MASQ: 'com.docker.network.bridge.enable_ip_masquerade',
  MTU: 'com.docker.network.driver.mtu',
  HOST_BINDING: 'com.docker.network.bridge.host_binding_ipv4',
  DEFAULT_BRIDGE: 'com.docker.network.bridge.default_bridge',
  IFACE_PREFIX: 'com.docker.network.container_iface_prefix',
} as const;

const KNOWN = new Set<string>(Object.values(OPT));

export function parseBool(key: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw new InvalidConfigError(`option ${key}=${value}: expected true or false`);
}

export interface BridgeOptions {
  name?: string;
  icc: boolean;
  masquerade: boolean;
  mtu?: number;
  ifacePrefix: string;
  /** The host address of this network's published ports when -p names none (Docker's host_binding_ipv4). */
  hostBinding?: string;
}

export function parseBridgeOptions(options: Record<string, string>, mtuFlag?: number): BridgeOptions {
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new InvalidConfigError(`unknown option "${key}" for the bridge driver (known: ${[...KNOWN].join(', ')})`);
  }
  const out: BridgeOptions = { icc: true, masquerade: true, ifacePrefix: 'eth' };
  if (options[OPT.NAME] !== undefined) {
    validateIfname(options[OPT.NAME]!, 'bridge name');
    out.name = options[OPT.NAME];
  }
  if (options[OPT.ICC] !== undefined) out.icc = parseBool(OPT.ICC, options[OPT.ICC]!);
  if (options[OPT.MASQ] !== undefined) out.masquerade = parseBool(OPT.MASQ, options[OPT.MASQ]!);
  if (options[OPT.MTU] !== undefined) out.mtu = parseMtu(options[OPT.MTU]!);
  if (mtuFlag !== undefined) {
    if (out.mtu !== undefined && out.mtu !== mtuFlag) throw new InvalidConfigError(`--mtu ${mtuFlag} contradicts ${OPT.MTU}=${out.mtu}`);
    out.mtu = parseMtu(mtuFlag);
  }
  if (options[OPT.HOST_BINDING] !== undefined) {
    try {
      out.hostBinding = formatIp(parseIp(options[OPT.HOST_BINDING]!.trim()));
    } catch {
      throw new InvalidConfigError(`option ${OPT.HOST_BINDING}="${options[OPT.HOST_BINDING]}" is not an IP address`);
    }
  }
  if (options[OPT.DEFAULT_BRIDGE] !== undefined) parseBool(OPT.DEFAULT_BRIDGE, options[OPT.DEFAULT_BRIDGE]!);
  if (options[OPT.IFACE_PREFIX] !== undefined) {
    const p = options[OPT.IFACE_PREFIX]!;
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,9}$/.test(p)) throw new InvalidConfigError(`${OPT.IFACE_PREFIX}="${p}": use 1-10 letters, digits, '_' or '-', starting with a letter`);
    out.ifacePrefix = p;
  }
  return out;
}

/** The host address of a network's published ports when -p names none: host_binding_ipv4 ('' = every address). */
export function defaultHostIP(options: Record<string, string>): string {
  const v = options[OPT.HOST_BINDING]?.trim();
  if (!v) return '';
  const ip = formatIp(parseIp(v));
  return ip === '0.0.0.0' || ip === '::' ? '' : ip;
}
