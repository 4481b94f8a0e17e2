// Address arithmetic for IPAM and the system layer. Parsing and validation go
// through ip-num; arithmetic is on BigInt values so that IPv4 and IPv6 share code.
import { IPv4, IPv6, Validator } from 'ip-num';
import { InvalidConfigError } from '../errors.js';
import type { Family } from '../system/kernel.js';

export interface IpAddr {
  family: Family;
  value: bigint;
}

export interface Cidr {
  family: Family;
  /** Network address (host bits zero). */
  network: bigint;
  prefixLen: number;
}

export const bitsOf = (f: Family) => (f === 4 ? 32 : 128);

export function isIpv4Text(s: string): boolean {
  return Validator.isValidIPv4String(s)[0];
}
export function isIpv6Text(s: string): boolean {
  return !s.includes('%') && Validator.isValidIPv6String(s)[0];
}

export function parseIp(text: string, what = 'IP address'): IpAddr {
  const s = text.trim();
  if (isIpv4Text(s) && /^\d+\.\d+\.\d+\.\d+$/.test(s)) return { family: 4, value: IPv4.fromString(s).getValue() };
  if (s.includes(':') && isIpv6Text(s)) return { family: 6, value: IPv6.fromString(s).getValue() };
  throw new InvalidConfigError(`invalid ${what} "${text}"`);
}

export function formatIp(a: IpAddr): string {
  if (a.family === 4) return new IPv4(a.value).toString();
  return compressIpv6(a.value);
}

/** RFC 5952 text form: lowercase, longest run of zero groups as "::". */
export function compressIpv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

export function mask(family: Family, prefixLen: number): bigint {
  const bits = BigInt(bitsOf(family));
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefixLen))) - 1n);
}

/**
 * Parses "a.b.c.d/n" or "x::/n". With strict, host bits must be zero (a subnet);
 * otherwise the address part is kept in `address` (an interface address).
 */
export function parseCidr(text: string, opts: { strict?: boolean; what?: string } = {}): Cidr & { address: bigint } {
  const what = opts.what ?? 'subnet';
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) throw new InvalidConfigError(`invalid ${what} "${text}": expected CIDR notation such as 172.20.0.0/16`);
  const ip = parseIp(m[1]!, what);
  const prefixLen = Number(m[2]);
  if (prefixLen > bitsOf(ip.family)) throw new InvalidConfigError(`invalid ${what} "${text}": prefix length ${prefixLen} is over ${bitsOf(ip.family)}`);
  const network = ip.value & mask(ip.family, prefixLen);
  if (opts.strict && network !== ip.value) {
    throw new InvalidConfigError(`invalid ${what} "${text}": host bits are set (did you mean ${formatIp({ family: ip.family, value: network })}/${prefixLen}?)`);
  }
  return { family: ip.family, network, prefixLen, address: ip.value };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.network })}/${c.prefixLen}`;
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefixLen);
}
export function cidrLast(c: Cidr): bigint {
  return c.network + cidrSize(c) - 1n;
}
export function cidrContains(c: Cidr, a: IpAddr): boolean {
  return c.family === a.family && (a.value & mask(c.family, c.prefixLen)) === c.network;
}
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.prefixLen, b.prefixLen);
  const m = mask(a.family, len);
  return (a.network & m) === (b.network & m);
}
/** True when inner lies entirely within outer. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefixLen >= outer.prefixLen && (inner.network & mask(outer.family, outer.prefixLen)) === outer.network;
}

export function ipToBuffer(a: IpAddr): Buffer {
  const n = a.family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  let v = a.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}
export function bufferToIp(b: Buffer): IpAddr {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return { family: b.length === 4 ? 4 : 6, value: v };
}

/** Docker's MAC for an IPv4 endpoint: 02:42 followed by the four address bytes. */
export function macFromIpv4(value: bigint): string {
  const bytes = [0x02, 0x42, ...ipToBuffer({ family: 4, value })];
  return bytes.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** A locally administered unicast MAC from random bytes (02:42:xx:xx:xx:xx). */
export function macFromBytes(bytes: Uint8Array): string {
  const out = [0x02, 0x42, bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!];
  return out.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
