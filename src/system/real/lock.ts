// Locks (flock) that never block the event loop (a warm server keeps answering
// other calls while one waits) and that hold when files are deleted under them.
// flock(2) locks an inode, not a path. Deleting a lock *file* while a process holds
// it lets the next opener create a new file and "hold the lock" too, so tsnet's own
// locks are taken on a directory (which cannot be unlinked while it has entries,
// and whose removal takes the state with it). Either way, once the lock is granted
// the path must still name the locked inode; if not, it is taken again.
import { closeSync, fstatSync, mkdirSync, openSync, statSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import type { LockOps } from '../kernel.js';
import { nativeAddon } from './addon.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.nlink > 0 && a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false; // the path is gone
  }
}

function openLock(path: string): number {
  // A directory may be reached through a symlink (a state root moved elsewhere); a lock
  // file never is: O_NOFOLLOW, so a symlink planted there cannot make us create another file.
  try {
    return openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR' && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return openSync(path, fsc.O_CREAT | fsc.O_RDWR | fsc.O_NOFOLLOW, 0o600);
}

/**
 * Takes an exclusive lock on path: a directory, or a file (created 0600 with its
 * parent directories if missing). Resolves to the held fd; closing it unlocks.
 */
export async function acquireFileLock(path: string, opts: { mkdir?: boolean; onWait?: () => void } = {}): Promise<number> {
  if (opts.mkdir !== false) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const addon = nativeAddon();
  for (;;) {
    const fd = openLock(path);
    let delay = 1;
    let waited = false;
    while (!addon.flock(fd, 'ex', true)) {
      if (!waited) opts.onWait?.();
      waited = true;
      await sleep(delay);
      delay = Math.min(delay * 2, 20);
    }
    if (sameFile(fd, path)) return fd;
    closeSync(fd); // the file was replaced or removed while we waited: lock the current one
  }
}

export async function withFileLock<T>(path: string, fn: () => Promise<T> | T, opts?: { mkdir?: boolean; onWait?: () => void }): Promise<T> {
  const fd = await acquireFileLock(path, opts);
  try {
    return await fn();
  } finally {
    closeSync(fd); // closing the last fd drops the flock
  }
}

export class RealLocks implements LockOps {
  withLock<T>(path: string, fn: () => Promise<T> | T): Promise<T> {
    return withFileLock(path, fn);
  }
}
