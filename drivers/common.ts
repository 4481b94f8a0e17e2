// Small kernel helpers shared by the drivers.
import type { DriverContext } from '../src/driverapi/driver.js';

export async function ensureLoopbackUp(nsFd: number, ctx: DriverContext): Promise<void> {
  const nl = ctx.sys.netlink(nsFd);
  try {
    const lo = await nl.getLinkByName('lo');
    if (lo && !lo.up) await nl.setLinkUp(lo.index);
  } finally {
    nl.close();
  }
}
