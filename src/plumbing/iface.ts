// Interface recipes shared by the drivers, the CNI plugins and (next) the runtime.
import type { Kernel, NetlinkHandle } from '../system/kernel.js';

/** Sets lo up or down on the namespace behind nl; false when the namespace has no lo. */
export async function setLoopback(nl: NetlinkHandle, up: boolean): Promise<boolean> {
  const lo = await nl.getLinkByName('lo');
  if (!lo) return false;
  if (lo.up !== up) await nl.setLinkUp(lo.index, up);
  return true;
}

/** Brings lo up inside the namespace behind nsFd (a fresh namespace has it down). */
export async function ensureLoopbackUp(sys: Kernel, nsFd: number): Promise<void> {
  const nl = sys.netlink(nsFd);
  try {
    await setLoopback(nl, true);
  } finally {
    nl.close();
  }
}
