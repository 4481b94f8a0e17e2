// Docker's default local address pools, in Docker's order: 172.17-31 as /16s,
// then 192.168.0.0/16 cut into /20s.
import { parseCidr, type Cidr } from './addr.js';

export interface PoolSpec {
  base: string;
  size: number;
}

export const DEFAULT_POOLS: readonly PoolSpec[] = [
  { base: '172.17.0.0/16', size: 16 },
  { base: '172.18.0.0/16', size: 16 },
  { base: '172.19.0.0/16', size: 16 },
  { base: '172.20.0.0/14', size: 16 },
  { base: '172.24.0.0/14', size: 16 },
  { base: '172.28.0.0/14', size: 16 },
  { base: '192.168.0.0/16', size: 20 },
];

/** Every candidate subnet of the pools, in allocation order. */
export function* candidateSubnets(pools: readonly PoolSpec[] = DEFAULT_POOLS): Generator<Cidr> {
  for (const p of pools) {
    const base = parseCidr(p.base, { strict: true });
    const count = 1n << BigInt(p.size - base.prefixLen);
    const step = 1n << BigInt(32 - p.size);
    for (let i = 0n; i < count; i++) yield { family: 4, network: base.network + i * step, prefixLen: p.size };
  }
}
