// tsnet-loopback: brings `lo` up in the container's namespace (the reference
// loopback plugin's job), as a thin layer over the kernel seam.
import type { Kernel } from '../system/kernel.js';
import { setLoopback } from '../plumbing/iface.js';
import { CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, type CniResult } from './spec.js';

async function withNs<T>(sys: Kernel, path: string, fn: (fd: number) => Promise<T>): Promise<T | undefined> {
  if (sys.netns.inode(path) === undefined) return undefined;
  const fd = sys.netns.open(path);
  try {
    return await fn(fd);
  } finally {
    sys.netns.close(fd);
  }
}

async function setLo(sys: Kernel, fd: number, up: boolean): Promise<boolean> {
  const nl = sys.netlink(fd);
  try {
    return await setLoopback(nl, up);
  } finally {
    nl.close();
  }
}

export function loopbackPlugin(sys: Kernel): CniPlugin {
  return {
    keys: [],
    async add(a: CniArgs): Promise<CniResult> {
      const ok = await withNs(sys, a.netns, (fd) => setLo(sys, fd, true));
      if (ok === undefined) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${a.netns} does not exist`);
      return {
        cniVersion: a.conf.cniVersion,
        interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: a.netns }],
        ips: [
          { address: '127.0.0.1/8', interface: 0 },
          { address: '::1/128', interface: 0 },
        ],
        dns: {},
      };
    },
    async del(a: CniArgs): Promise<void> {
      // Nothing to release when the namespace is already gone (the spec: DEL must succeed).
      if (a.netns) await withNs(sys, a.netns, (fd) => setLo(sys, fd, false));
    },
    async check(a: CniArgs): Promise<void> {
      const up = await withNs(sys, a.netns, async (fd) => {
        const nl = sys.netlink(fd);
        try {
          return (await nl.getLinkByName('lo'))?.up ?? false;
        } finally {
          nl.close();
        }
      });
      if (up === undefined) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${a.netns} does not exist`);
      if (!up) throw new CniError(CNI_ERR.CHECK_FAILED, 'lo is down in the container');
    },
    async gc(): Promise<void> {},
    async status(): Promise<void> {},
  };
}
