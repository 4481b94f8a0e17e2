// Unpacking one image layer into its own directory, safely: every entry's path is
// cleaned and must stay inside the layer (a "../" is refused, not clamped), no
// entry is ever written through a symlink (each parent must be a real directory;
// a symlink the layer itself made is never followed), and the OCI whiteouts
// become overlayfs ones: ".wh.NAME" a 0/0 character device at NAME, ".wh..wh..opq"
// the opaque mark on its directory. The filesystem is behind LayerFs (real: the
// kernel; tests: a fake that records).
import type { FileKind } from '../../system/kernel.js';
import { ImageInvalidError } from '../../errors.js';
import type { TarHeader, TarSink } from './tar.js';

export interface LayerFile {
  write(b: Buffer): void;
  close(): void;
}

/** A layer directory; every path is relative to it and already checked. */
export interface LayerFs {
  kind(rel: string): FileKind | undefined;
  mkdir(rel: string, mode: number): void;
  /** Creates a new file (nothing may be there). */
  create(rel: string, mode: number): LayerFile;
  symlink(target: string, rel: string): void;
  link(existingRel: string, rel: string): void;
  mknod(rel: string, type: 'char' | 'block' | 'fifo', mode: number, major: number, minor: number): void;
  /** Removes whatever is at rel, a directory with its contents. */
  remove(rel: string): void;
  lchown(rel: string, uid: number, gid: number): void;
  chmod(rel: string, mode: number): void;
  lutimes(rel: string, mtime: number): void;
  lsetxattr(rel: string, name: string, value: Buffer): void;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** The entry's path relative to the layer root ('' for the root itself); refuses one that leaves it. */
export function cleanEntryPath(name: string): string {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new ImageInvalidError(`layer entry "${name}" points outside the layer (".." in its path)`);
    parts.push(p);
  }
  return parts.join('/');
}

const parentOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
const baseOf = (rel: string) => rel.slice(rel.lastIndexOf('/') + 1);

export class LayerUnpacker implements TarSink {
  private file?: LayerFile;
  private readonly dirTimes = new Map<string, number>();
  /** Bytes of file content written. */
  size = 0;
  entries = 0;

  constructor(private readonly fs: LayerFs) {}

  /** Parents of rel must be directories the layer made (missing ones are made 0755). */
  private parents(rel: string, name: string): void {
    const parts = rel.split('/').slice(0, -1);
    let at = '';
    for (const p of parts) {
      at = at ? `${at}/${p}` : p;
      const k = this.fs.kind(at);
      if (k === undefined) this.fs.mkdir(at, 0o755);
      else if (k === 'symlink') throw new ImageInvalidError(`layer entry "${name}" would be written through the symlink "${at}"`);
      else if (k !== 'dir') throw new ImageInvalidError(`layer entry "${name}": "${at}" is not a directory`);
    }
  }

  entry(h: TarHeader): void {
    this.entries++;
    const rel = cleanEntryPath(h.name);
    if (rel === '') return; // the root directory itself
    const base = baseOf(rel);
    if (base === OPAQUE) {
      const dir = parentOf(rel);
      this.parents(rel, h.name);
      if (dir) this.fs.lsetxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'));
      return;
    }
    if (base.startsWith(WHITEOUT)) {
      const target = (parentOf(rel) ? `${parentOf(rel)}/` : '') + base.slice(WHITEOUT.length);
      this.parents(target, h.name);
      if (this.fs.kind(target) !== undefined) this.fs.remove(target);
      this.fs.mknod(target, 'char', 0, 0, 0);
      return;
    }
    this.parents(rel, h.name);
    const existing = this.fs.kind(rel);
    if (existing !== undefined && !(existing === 'dir' && h.type === 'dir')) this.fs.remove(rel);
    switch (h.type) {
      case 'dir':
        if (existing !== 'dir') this.fs.mkdir(rel, 0o755);
        break;
      case 'file':
        this.file = this.fs.create(rel, 0o600);
        break;
      case 'symlink':
        this.fs.symlink(h.linkname, rel);
        break;
      case 'hardlink': {
        const target = cleanEntryPath(h.linkname);
        this.parents(target, h.linkname);
        if (this.fs.kind(target) !== 'file') throw new ImageInvalidError(`layer entry "${h.name}" is a hard link to "${h.linkname}", which is not a file in this layer`);
        this.fs.link(target, rel);
        return; // a hard link shares its target's owner, mode and times
      }
      case 'char':
      case 'block':
      case 'fifo':
        this.fs.mknod(rel, h.type, h.mode, h.devmajor, h.devminor);
        break;
    }
    this.fs.lchown(rel, h.uid, h.gid);
    if (h.type !== 'symlink') this.fs.chmod(rel, h.mode);
    for (const [k, v] of Object.entries(h.xattrs)) this.fs.lsetxattr(rel, k, v);
    if (h.type === 'dir') this.dirTimes.set(rel, h.mtime);
    else if (h.type !== 'file') this.fs.lutimes(rel, h.mtime);
    else this.pendingTime = { rel, mtime: h.mtime };
  }

  private pendingTime?: { rel: string; mtime: number };

  data(chunk: Buffer): void {
    this.file?.write(chunk);
    this.size += chunk.length;
  }

  end(): void {
    if (this.file) {
      this.file.close();
      this.file = undefined;
    }
    if (this.pendingTime) {
      this.fs.lutimes(this.pendingTime.rel, this.pendingTime.mtime);
      this.pendingTime = undefined;
    }
  }

  /** After the last entry: directory times (the entries inside changed them). */
  finish(): void {
    for (const [rel, t] of this.dirTimes) if (this.fs.kind(rel) === 'dir') this.fs.lutimes(rel, t);
  }
}
