// What /proc says about processes: whether one still lives (and is the same one:
// its start time guards against pid reuse), and this process's capability bounding set.
import { readFileSync } from 'node:fs';

/** Start time of a live (not zombie) process, or undefined. */
export function processStart(pid: number): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    return Number(f[19]);
  } catch {
    return undefined;
  }
}
export const alive = (pid: number, start?: number) => {
  const s = processStart(pid);
  return s !== undefined && (start === undefined || s === start);
};

/** The capability bounding set of this process (/proc/self/status CapBnd). */
export function ownBoundingSet(): bigint {
  const m = /^CapBnd:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : (1n << 41n) - 1n;
}

