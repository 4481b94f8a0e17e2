// Small kernel helpers shared by the drivers.
import type { DriverContext } from '../src/driverapi/driver.js';
import type { SysctlOps } from '../src/system/ports.js';

/** Sets a sysctl only when it differs (a read is cheaper than a write, and idempotent). */
export function ensureSysctl(sysctl: SysctlOps, key: string, value: string): void {
  if (sysctl.get(key) !== value) sysctl.set(key, value);
}

export async function ensureLoopbackUp(nsFd: number, ctx: DriverContext): Promise<void> {
  const nl = ctx.sys.netlink(nsFd);
  try {
    const lo = await nl.getLinkByName('lo');
    if (lo && !lo.up) await nl.setLinkUp(lo.index);
  } finally {
    nl.close();
  }
}
