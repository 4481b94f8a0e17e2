// Kernel names and sizes every user of the plumbing validates the same way: the
// bridge driver, the tsnet-bridge CNI plugin, and the runtime's interfaces.
import { InvalidConfigError } from '../errors.js';

export const IFNAMSIZ = 15;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Linux interface names: 1-15 bytes, no '/', whitespace or ':' (we also refuse shell/iptables metacharacters). */
export function validateIfname(name: string, what: string): void {
  if (!name) throw new InvalidConfigError(`${what} must not be empty`);
  if (Buffer.byteLength(name) > IFNAMSIZ) throw new InvalidConfigError(`${what} "${name}" is ${Buffer.byteLength(name)} bytes long: Linux allows at most ${IFNAMSIZ}`);
  if (!IFNAME_RE.test(name)) throw new InvalidConfigError(`${what} "${name}" may only contain letters, digits, '_', '.' and '-', and must start with a letter or digit`);
}

export function parseMtu(value: string | number, what = 'MTU'): number {
  const n = typeof value === 'number' ? value : /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 68 || n > 65535) throw new InvalidConfigError(`${what} "${value}" must be a whole number from 68 to 65535`);
  return n;
}

/** A unicast Ethernet address in colon form, lower-cased ('02:42:ac:11:00:02'). */
export function parseMac(value: unknown, what = 'MAC address'): string {
  const text = typeof value === 'string' ? value.trim().toLowerCase().replace(/-/g, ':') : '';
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(text)) throw new InvalidConfigError(`${what} ${JSON.stringify(value)} is not a MAC address such as 02:42:ac:11:00:02`);
  if (parseInt(text.slice(0, 2), 16) & 1) throw new InvalidConfigError(`${what} ${text} is a multicast address: an interface needs a unicast one`);
  if (text === '00:00:00:00:00:00') throw new InvalidConfigError(`${what} must not be all zeros`);
  return text;
}
