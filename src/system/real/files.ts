// Files and mounts on the real kernel. Node's errors become SyscallErrors with the
// kernel's errno, so the layers above test one kind of error whichever kernel
// they run on.
import {
  accessSync, closeSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmdirSync, statSync, symlinkSync, unlinkSync, writeSync,
  constants as fsc,
} from 'node:fs';
import type { FileKind, FileOps, MountOps } from '../kernel.js';
import { SyscallError } from '../../errors.js';
import { nativeAddon } from './addon.js';

const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? 'EIO';
const sysErr = (syscall: string, path: string, err: unknown) => new SyscallError(syscall, code(err), `${syscall} ${path}: ${code(err)} (${(err as Error).message})`, { cause: err });

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
}

/** Opens, writes everything, closes; the file is closed whatever happens. */
function writeFd(path: string, flags: number, mode: number, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, flags, mode);
  } catch (err) {
    throw sysErr('open', path, err);
  }
  try {
    writeAll(fd, text);
  } catch (err) {
    throw sysErr('write', path, err);
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): FileKind {
  return st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
}

export class RealFiles implements FileOps {
  read(path: string, opts: { noFollow?: boolean } = {}): string | undefined {
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY | (opts.noFollow ? fsc.O_NOFOLLOW : 0));
    } catch (err) {
      if (code(err) === 'ENOENT' || (opts.noFollow && code(err) === 'ELOOP')) return undefined;
      throw sysErr('open', path, err);
    }
    try {
      return readFileSync(fd, 'utf8');
    } catch (err) {
      throw sysErr('read', path, err);
    } finally {
      closeSync(fd);
    }
  }

  write(path: string, text: string, opts: { mode?: number; existing?: boolean } = {}): void {
    const flags = opts.existing ? fsc.O_WRONLY : fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC;
    writeFd(path, flags, opts.mode ?? 0o644, text);
  }

  create(path: string, text: string, mode = 0o644): boolean {
    try {
      writeFd(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode, text);
      return true;
    } catch (err) {
      if (err instanceof SyscallError && err.errno === 'EEXIST' && err.syscall === 'open') return false;
      // Created but not written (a full disk): it must not stay, half a file holding a name.
      if (err instanceof SyscallError && err.syscall === 'write') this.remove(path);
      throw err;
    }
  }

  replace(path: string, text: string, opts: { mode?: number; tmp?: string } = {}): void {
    const tmp = opts.tmp ?? `${path}.${process.pid}.tmp`;
    try {
      // O_EXCL: never through a symlink someone planted at the temp name; one
      // there (a dead writer's, or ours from a pid reused) is removed first.
      if (!this.create(tmp, text, opts.mode) && !(this.remove(tmp) && this.create(tmp, text, opts.mode))) {
        throw new SyscallError('open', 'EEXIST', `open ${tmp}: EEXIST`);
      }
      this.rename(tmp, path);
    } catch (err) {
      this.remove(tmp); // a full disk must not leave a partial file behind
      throw err;
    }
  }

  list(dir: string): string[] {
    try {
      return readdirSync(dir).sort();
    } catch (err) {
      if (code(err) === 'ENOENT') return [];
      throw sysErr('readdir', dir, err);
    }
  }

  kind(path: string): FileKind | undefined {
    try {
      return kindOf(lstatSync(path));
    } catch (err) {
      if (code(err) === 'ENOENT') return undefined;
      throw sysErr('lstat', path, err);
    }
  }

  mkdir(path: string, mode = 0o755): void {
    if (this.isDir(path)) return; // the usual case: one stat
    // One component at a time: Node's recursive mkdir loops forever where a
    // filesystem answers ENOENT under an existing directory (/proc does).
    let at = path.startsWith('/') ? '' : '.';
    for (const part of path.split('/').filter(Boolean)) {
      at += `/${part}`;
      try {
        mkdirSync(at, { mode });
      } catch (err) {
        if (code(err) !== 'EEXIST') throw sysErr('mkdir', at, err);
        // Something is there: fine if it is (or a symlink leads to) a directory, as mkdir -p.
        if (!this.isDir(at)) throw new SyscallError('mkdir', 'ENOTDIR', `mkdir ${path}: ${at} is not a directory`);
      }
    }
  }

  /** A directory is there (a symlink to one counts, as for mkdir -p). */
  private isDir(path: string): boolean {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false;
    }
  }

  remove(path: string): boolean {
    try {
      unlinkSync(path);
      return true;
    } catch (err) {
      if (code(err) === 'ENOENT') return false;
      if (code(err) !== 'EISDIR' && code(err) !== 'EPERM') throw sysErr('unlink', path, err);
    }
    try {
      rmdirSync(path);
      return true;
    } catch (err) {
      if (code(err) === 'ENOENT') return false;
      throw sysErr('rmdir', path, err);
    }
  }

  rename(from: string, to: string): void {
    try {
      renameSync(from, to);
    } catch (err) {
      throw sysErr('rename', `${from} -> ${to}`, err);
    }
  }

  link(existing: string, path: string): void {
    try {
      linkSync(existing, path);
    } catch (err) {
      throw sysErr('link', `${existing} -> ${path}`, err);
    }
  }

  symlink(target: string, path: string): void {
    try {
      symlinkSync(target, path);
    } catch (err) {
      throw sysErr('symlink', `${path} -> ${target}`, err);
    }
  }

  writable(dir: string): boolean {
    try {
      accessSync(dir, fsc.W_OK | fsc.X_OK);
      return statSync(dir).isDirectory();
    } catch {
      return false;
    }
  }
}

/** A mount point field of /proc/self/mountinfo: octal escapes for space, tab, newline, backslash. */
const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

export class RealMounts implements MountOps {
  bind(source: string, target: string, opts: { readOnly?: boolean } = {}): void {
    try {
      nativeAddon().bindMount(source, target, opts.readOnly === true);
    } catch (err) {
      throw sysErr('mount', `${source} -> ${target}`, err);
    }
  }

  overlay(target: string, opts: { lower: string[]; upper: string; work: string }): void {
    // index=off: a layer shared by many containers must not be tied to one upper dir.
    const data = `lowerdir=${opts.lower.join(':')},upperdir=${opts.upper},workdir=${opts.work},index=off`;
    try {
      nativeAddon().mountFs('overlay', target, 'overlay', 0, data);
    } catch (err) {
      throw sysErr('mount', `overlay on ${target}`, err);
    }
  }

  unmount(target: string, opts: { detach?: boolean } = {}): boolean {
    try {
      return nativeAddon().umount(target, opts.detach === true);
    } catch (err) {
      throw sysErr('umount', target, err);
    }
  }

  isMountPoint(path: string): boolean {
    let real: string;
    try {
      real = realpathSync.native(path);
    } catch {
      return false; // nothing there: nothing mounted there
    }
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line !== '' && unescapeMount(line.split(' ')[4] ?? '') === real);
  }
}
