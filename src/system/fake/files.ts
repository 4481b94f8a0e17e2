// An in-memory filesystem and mount table for the fake kernel. It answers the
// way Linux does where tsnet depends on it (the contract tests hold both to the
// same cases): ENOENT for a missing parent, ENOTDIR through a file, O_EXCL
// refusing a symlink, rename replacing a symlink rather than its target, hard
// links sharing one file, a directory removed only when empty.
import { posix } from 'node:path';
import { SyscallError } from '../../errors.js';
import type { FileKind, FileOps, MountOps } from '../kernel.js';

interface FileNode {
  t: 'file';
  text: string;
  mode: number;
}
type Node = FileNode | { t: 'dir'; mode: number } | { t: 'symlink'; target: string };

const fail = (syscall: string, errno: string, path: string) => new SyscallError(syscall, errno, `${syscall} ${path}: ${errno}`);
const MAX_LINKS = 40; // the kernel's ELOOP limit

export class FakeFiles implements FileOps {
  /** Canonical absolute path -> node. */
  readonly nodes = new Map<string, Node>([['/', { t: 'dir', mode: 0o755 }]]);
  /** Set to an errno (e.g. 'ENOSPC') to make every write fail as a full disk does. */
  failWrites?: string;
  /** Paths a read-only bind mount covers (FakeMounts keeps it). */
  readonly readOnly = new Set<string>();

  private abs(path: string): string {
    return posix.resolve('/', path);
  }

  /**
   * The canonical path of path: symlinks followed in every directory component,
   * and in the last one too when follow. Throws ENOENT/ENOTDIR/ELOOP as path
   * lookup does; a missing last component is fine (the path is returned).
   */
  resolve(path: string, follow: boolean, hops = 0): string {
    const parts = this.abs(path).split('/').filter(Boolean);
    let at = '/';
    for (let i = 0; i < parts.length; i++) {
      const next = at === '/' ? `/${parts[i]}` : `${at}/${parts[i]}`;
      const node = this.nodes.get(next);
      const last = i === parts.length - 1;
      if (node?.t === 'symlink' && (!last || follow)) {
        if (hops >= MAX_LINKS) throw fail('open', 'ELOOP', path);
        const target = node.target.startsWith('/') ? node.target : posix.join(at, node.target);
        at = this.resolve(target, true, hops + 1);
        continue;
      }
      if (!last) {
        if (!node) throw fail('open', 'ENOENT', path);
        if (node.t !== 'dir') throw fail('open', 'ENOTDIR', path);
      }
      at = next;
    }
    return at;
  }

  /** resolve(), with a missing directory on the way answered as "nothing there" (undefined). */
  private lookup(path: string, follow: boolean): string | undefined {
    try {
      return this.resolve(path, follow);
    } catch (err) {
      if (err instanceof SyscallError && err.errno === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** The directory a new entry at path would go in (which must exist), and the entry's canonical path. */
  private entry(path: string, syscall: string): string {
    const p = this.resolve(path, false);
    const parent = this.nodes.get(posix.dirname(p));
    if (!parent) throw fail(syscall, 'ENOENT', path);
    if (parent.t !== 'dir') throw fail(syscall, 'ENOTDIR', path);
    return p;
  }

  private checkWrite(path: string, canonical?: string): void {
    if (canonical !== undefined && this.readOnly.has(canonical)) throw fail('open', 'EROFS', path);
    if (this.failWrites) throw fail('write', this.failWrites, path);
  }

  read(path: string, opts: { noFollow?: boolean } = {}): string | undefined {
    let p: string;
    try {
      p = this.resolve(path, !opts.noFollow);
    } catch (err) {
      if (err instanceof SyscallError && err.errno === 'ENOENT') return undefined;
      if (opts.noFollow && err instanceof SyscallError && err.errno === 'ELOOP') return undefined;
      throw err;
    }
    const n = this.nodes.get(p);
    if (!n) return undefined;
    if (n.t === 'symlink') return undefined; // only reached with noFollow (O_NOFOLLOW: ELOOP)
    if (n.t === 'dir') throw fail('read', 'EISDIR', path);
    return n.text;
  }

  write(path: string, text: string, opts: { mode?: number; existing?: boolean } = {}): void {
    const p = this.entry(this.resolve(path, true), 'open');
    const n = this.nodes.get(p);
    if (n?.t === 'dir') throw fail('open', 'EISDIR', path);
    if (!n && opts.existing) throw fail('open', 'ENOENT', path);
    this.checkWrite(path, p);
    if (n?.t === 'file') n.text = text; // hard links see it too
    else this.nodes.set(p, { t: 'file', text, mode: opts.mode ?? 0o644 });
  }

  create(path: string, text: string, mode = 0o644): boolean {
    const p = this.entry(path, 'open');
    if (this.nodes.has(p)) return false; // a symlink too: O_CREAT|O_EXCL never follows one
    this.checkWrite(path);
    this.nodes.set(p, { t: 'file', text, mode });
    return true;
  }

  replace(path: string, text: string, opts: { mode?: number; tmp?: string } = {}): void {
    const tmp = opts.tmp ?? `${path}.${process.pid}.tmp`;
    try {
      if (!this.create(tmp, text, opts.mode) && !(this.remove(tmp) && this.create(tmp, text, opts.mode))) throw fail('open', 'EEXIST', tmp);
      this.rename(tmp, path);
    } catch (err) {
      this.remove(tmp);
      throw err;
    }
  }

  list(dir: string): string[] {
    const p = this.lookup(dir, true);
    const n = p === undefined ? undefined : this.nodes.get(p);
    if (!n || p === undefined) return [];
    if (n.t !== 'dir') throw fail('readdir', 'ENOTDIR', dir);
    const prefix = p === '/' ? '/' : `${p}/`;
    return [...this.nodes.keys()]
      .filter((k) => k !== p && k.startsWith(prefix) && !k.slice(prefix.length).includes('/'))
      .map((k) => k.slice(prefix.length))
      .sort();
  }

  kind(path: string): FileKind | undefined {
    const p = this.lookup(path, false);
    const n = p === undefined ? undefined : this.nodes.get(p);
    return n ? (n.t === 'symlink' ? 'symlink' : n.t) : undefined;
  }

  mkdir(path: string, mode = 0o755): void {
    let at = '';
    for (const part of this.abs(path).split('/').filter(Boolean)) {
      at += `/${part}`;
      const p = this.resolve(at, true);
      const n = this.nodes.get(p);
      if (n?.t === 'dir') continue;
      if (n) throw fail('mkdir', 'ENOTDIR', `${path}: ${at} is not a directory`);
      this.checkWrite(at);
      this.nodes.set(p, { t: 'dir', mode });
    }
  }

  remove(path: string): boolean {
    const p = this.lookup(path, false);
    const n = p === undefined ? undefined : this.nodes.get(p);
    if (!n || p === undefined) return false;
    if (n.t === 'dir' && this.list(p).length) throw fail('rmdir', 'ENOTEMPTY', path);
    this.nodes.delete(p);
    return true;
  }

  rename(from: string, to: string): void {
    const a = this.resolve(from, false);
    const n = this.nodes.get(a);
    if (!n) throw fail('rename', 'ENOENT', `${from} -> ${to}`);
    const b = this.entry(to, 'rename');
    if (a === b) return;
    const there = this.nodes.get(b);
    if (there?.t === 'dir' && n.t !== 'dir') throw fail('rename', 'EISDIR', `${from} -> ${to}`);
    if (there && there.t !== 'dir' && n.t === 'dir') throw fail('rename', 'ENOTDIR', `${from} -> ${to}`);
    if (there?.t === 'dir' && this.list(b).length) throw fail('rename', 'ENOTEMPTY', `${from} -> ${to}`);
    if (n.t === 'dir' && (b + '/').startsWith(a + '/')) throw fail('rename', 'EINVAL', `${from} -> ${to}`);
    this.nodes.delete(b);
    // A directory takes its whole subtree with it.
    for (const [k, v] of [...this.nodes]) {
      if (k === a || k.startsWith(`${a}/`)) {
        this.nodes.delete(k);
        this.nodes.set(b + k.slice(a.length), v);
      }
    }
  }

  link(existing: string, path: string): void {
    const a = this.resolve(existing, false); // link(2) does not follow a symlink
    const n = this.nodes.get(a);
    if (!n) throw fail('link', 'ENOENT', `${existing} -> ${path}`);
    if (n.t === 'dir') throw fail('link', 'EPERM', `${existing} -> ${path}`);
    const b = this.entry(path, 'link');
    if (this.nodes.has(b)) throw fail('link', 'EEXIST', `${existing} -> ${path}`);
    this.nodes.set(b, n); // the same node: one file, two names
  }

  symlink(target: string, path: string): void {
    const p = this.entry(path, 'symlink');
    if (this.nodes.has(p)) throw fail('symlink', 'EEXIST', path);
    this.nodes.set(p, { t: 'symlink', target });
  }

  writable(dir: string): boolean {
    try {
      return this.nodes.get(this.resolve(dir, true))?.t === 'dir';
    } catch {
      return false;
    }
  }

  /** The fake is root: it may write anywhere there is a directory. A file's mode, for assertions. */
  modeOf(path: string): number | undefined {
    const n = this.nodes.get(this.resolve(path, true));
    return n && n.t !== 'symlink' ? n.mode : undefined;
  }
}

/** The fake's mount table: records binds (file access does not go through them). */
export class FakeMounts implements MountOps {
  readonly table = new Map<string, { source: string; readOnly: boolean }>();
  constructor(private readonly files: FakeFiles) {}

  bind(source: string, target: string, opts: { readOnly?: boolean } = {}): void {
    const src = this.files.resolve(source, true);
    const dst = this.files.resolve(target, true);
    if (!this.files.nodes.has(src) && !this.table.has(src)) throw fail('mount', 'ENOENT', source);
    if (!this.files.nodes.has(dst)) throw fail('mount', 'ENOENT', target);
    const s = this.files.nodes.get(src);
    const d = this.files.nodes.get(dst);
    if (s && d && (s.t === 'dir') !== (d.t === 'dir')) throw fail('mount', s.t === 'dir' ? 'ENOTDIR' : 'EISDIR', `${source} -> ${target}`);
    this.table.set(dst, { source: src, readOnly: opts.readOnly === true });
    if (opts.readOnly) this.files.readOnly.add(dst);
  }

  overlay(target: string, opts: { lower: string[]; upper: string; work: string }): void {
    const dst = this.files.resolve(target, true);
    for (const d of [...opts.lower, opts.upper, opts.work, target]) {
      const n = this.files.nodes.get(this.files.resolve(d, true));
      if (!n) throw fail('mount', 'ENOENT', d);
      if (n.t !== 'dir') throw fail('mount', 'ENOTDIR', d);
    }
    this.table.set(dst, { source: `overlay:${opts.lower.join(':')}`, readOnly: false });
  }

  unmount(target: string, _opts: { detach?: boolean } = {}): boolean {
    let p: string;
    try {
      p = this.files.resolve(target, true);
    } catch {
      return false;
    }
    this.files.readOnly.delete(p);
    return this.table.delete(p);
  }

  isMountPoint(path: string): boolean {
    try {
      return this.table.has(this.files.resolve(path, true));
    } catch {
      return false;
    }
  }
}
