// sysctl through /proc/sys. Files under /proc/sys/net belong to the namespace of
// whoever opens them, so for another namespace the file is opened inside it (one
// synchronous addon call) and read or written through the fd afterwards.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import type { SysctlOps } from '../kernel.js';
import { SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { nativeAddon } from './addon.js';

/** 'net.ipv4.ip_forward', or with slashes when a part has dots: 'net/ipv4/conf/br.1/route_localnet'. */
const pathOf = (key: string) => `/proc/sys/${key.includes('/') ? key : key.replace(/\./g, '/')}`;

export class RealSysctl implements SysctlOps {
  constructor(private readonly log: Logger) {}

  private openIn(key: string, flags: string, nsFd?: number): number | undefined {
    const open = () => {
      try {
        return openSync(pathOf(key), flags);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new SyscallError('open', (err as NodeJS.ErrnoException).code ?? 'EIO', `sysctl ${key}: ${(err as Error).message}`, { cause: err });
      }
    };
    return nsFd === undefined ? open() : nativeAddon().withNetns(nsFd, open);
  }

  get(key: string, nsFd?: number): string | undefined {
    const fd = this.openIn(key, 'r', nsFd);
    if (fd === undefined) return undefined;
    try {
      const buf = Buffer.alloc(4096);
      const n = readSync(fd, buf, 0, buf.length, 0);
      return buf.subarray(0, n).toString('utf8').trim();
    } finally {
      closeSync(fd);
    }
  }

  set(key: string, value: string, nsFd?: number): void {
    const fd = this.openIn(key, 'w', nsFd);
    if (fd === undefined) throw new SyscallError('open', 'ENOENT', `sysctl ${key} does not exist on this kernel`);
    try {
      writeSync(fd, value);
      this.log.debug({ key, value, nsFd }, 'sysctl');
    } catch (err) {
      throw new SyscallError('write', (err as NodeJS.ErrnoException).code ?? 'EIO', `sysctl ${key}=${value}: ${(err as Error).message}`, { cause: err });
    } finally {
      closeSync(fd);
    }
  }
}
