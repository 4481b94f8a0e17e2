// Interface recipes shared by the drivers, the CNI plugins and (next) the runtime.
import type { Kernel } from '../system/kernel.js';

/** Brings lo up inside the namespace behind nsFd (a fresh namespace has it down). */
export async function ensureLoopbackUp(sys: Kernel, nsFd: number): Promise<void> {
  const nl = sys.netlink(nsFd);
  try {
    const lo = await nl.getLinkByName('lo');
    if (lo && !lo.up) await nl.setLinkUp(lo.index);
  } finally {
    nl.close();
  }
}
