// Network namespace handles: persistent named namespaces pinned by a bind mount
// on a file under the run directory (the layout `ip netns add` uses), opened by
// path or by pid.
import { closeSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { NetnsOps } from '../kernel.js';
import { AlreadyExistsError, SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { nativeAddon } from './addon.js';
import { RealFiles, RealMounts } from './files.js';

function sysErr(syscall: string, err: unknown): SyscallError {
  const e = err as NodeJS.ErrnoException;
  return new SyscallError(syscall, e.code ?? 'EIO', e.message, { cause: err });
}

export class RealNetns implements NetnsOps {
  constructor(
    private readonly log: Logger,
    private readonly files = new RealFiles(),
    private readonly mounts = new RealMounts(),
  ) {}

  /** The file a namespace is pinned on: made here, never one that exists. */
  private createPinFile(path: string): void {
    this.files.mkdir(dirname(path), 0o755);
    if (!this.files.create(path, '', 0o444)) throw new AlreadyExistsError(`namespace file ${path} already exists`);
  }

  create(path: string): void {
    this.createPinFile(path);
    try {
      nativeAddon().createNetns(path);
    } catch (err) {
      this.files.remove(path);
      throw sysErr('unshare', err);
    }
    this.log.debug({ path }, 'netns created');
  }

  pin(source: string, path: string): void {
    this.createPinFile(path);
    try {
      this.mounts.bind(source, path);
    } catch (err) {
      this.files.remove(path);
      throw err;
    }
    this.log.debug({ source, path }, 'netns pinned');
  }

  remove(path: string): boolean {
    const unmounted = this.mounts.unmount(path, { detach: true });
    const existed = this.files.remove(path) || unmounted;
    this.log.debug({ path, existed }, 'netns removed');
    return existed;
  }

  open(path: string): number {
    try {
      return openSync(path, 'r');
    } catch (err) {
      throw sysErr('open', err);
    }
  }

  close(fd: number): void {
    closeSync(fd);
  }

  /** The device number of nsfs, where every namespace file lives (looked up once). */
  private nsfsDev?: number;

  inode(path: string): number | undefined {
    try {
      this.nsfsDev ??= statSync('/proc/self/ns/net').dev;
      const st = statSync(path);
      // A live pin is a bind mount of an nsfs file; an unpinned leftover is a plain file.
      return st.dev === this.nsfsDev ? st.ino : undefined;
    } catch {
      return undefined;
    }
  }

  within<T>(fd: number, fn: () => T): T {
    return nativeAddon().withNetns(fd, fn);
  }
}
