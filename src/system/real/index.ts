import type { Kernel } from '../kernel.js';
import type { Logger } from '../../log.js';
import { RealExec } from './exec.js';
import { RealNetlink } from './netlink.js';
import { RealNetns } from './netns.js';
import { RealSysctl } from './sysctl.js';
import { readNftGeneration } from './nfgen.js';
import { portInUse } from '../../portmapper/probe.js';
import { RealLocks } from './lock.js';
import { RealFiles, RealMounts } from './files.js';

export function createRealSystem(log: Logger): Kernel {
  const nlLog = log.child({ component: 'netlink' });
  const files = new RealFiles();
  const mounts = new RealMounts();
  return {
    netlink: (nsFd?: number) => new RealNetlink(nlLog, nsFd),
    netns: new RealNetns(log.child({ component: 'netns' }), files, mounts),
    exec: new RealExec(log.child({ component: 'exec' })),
    sysctl: new RealSysctl(log.child({ component: 'sysctl' })),
    locks: new RealLocks(),
    files,
    mounts,
    firewallGeneration: () => readNftGeneration(nlLog),
    portInUse,
  };
}
