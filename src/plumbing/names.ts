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
