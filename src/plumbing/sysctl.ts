// Small sysctl recipes shared by the drivers and the CNI plugins.
import type { SysctlOps } from '../system/kernel.js';

/** Sets a sysctl only when it differs (a read is cheaper than a write, and idempotent). */
export function ensureSysctl(sysctl: SysctlOps, key: string, value: string, nsFd?: number): void {
  if (sysctl.get(key, nsFd) !== value) sysctl.set(key, value, nsFd);
}
