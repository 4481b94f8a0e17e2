// Network namespace handles: persistent named namespaces pinned by a bind mount
// on a file under the run directory (the layout `ip netns add` uses), opened by
// path or by pid.
import { closeSync, mkdirSync, openSync, statSync, unlinkSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import type { NetnsOps } from '../kernel.js';
import { AlreadyExistsError, SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { nativeAddon } from './addon.js';

function createPinFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  try {
    closeSync(openSync(path, fsc.O_CREAT | fsc.O_EXCL | fsc.O_RDONLY, 0o444));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`namespace file ${path} already exists`);
    throw err;
  }
}

function sysErr(syscall: string, err: unknown): SyscallError {
  const e = err as NodeJS.ErrnoException;
  return new SyscallError(syscall, e.code ?? 'EIO', e.message, { cause: err });
}

export class RealNetns implements NetnsOps {
  constructor(private readonly log: Logger) {}

  create(path: string): void {
    createPinFile(path);
    try {
      nativeAddon().createNetns(path);
    } catch (err) {
      unlinkSync(path);
      throw sysErr('unshare', err);
    }
    this.log.debug({ path }, 'netns created');
  }

  pin(source: string, path: string): void {
    createPinFile(path);
    try {
      nativeAddon().bindMount(source, path);
    } catch (err) {
      unlinkSync(path);
      throw sysErr('mount', err);
    }
    this.log.debug({ source, path }, 'netns pinned');
  }

  remove(path: string): boolean {
    let existed = false;
    try {
      existed = nativeAddon().umount(path, true);
    } catch (err) {
      throw sysErr('umount', err);
    }
    try {
      unlinkSync(path);
      existed = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw sysErr('unlink', err);
    }
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
