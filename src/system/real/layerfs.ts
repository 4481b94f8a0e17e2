// The real LayerFs: one layer directory on disk. The unpacker has checked every
// path (inside the layer, no symlinked parent); this adds the no-follow flags.
import { chmodSync, closeSync, constants as fsc, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { FileKind } from '../kernel.js';
import type { LayerFile, LayerFs } from '../../runtime/images/unpack.js';
import { nativeAddon } from './addon.js';
import { asTsnetError } from '../../errors.js';

const S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFIFO = 0o010000;

export class RealLayerFs implements LayerFs {
  constructor(readonly dir: string) {}
  private p(rel: string): string {
    return join(this.dir, rel);
  }
  kind(rel: string): FileKind | undefined {
    try {
      const st = lstatSync(this.p(rel));
      return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw asTsnetError(err);
    }
  }
  mkdir(rel: string, mode: number): void {
    mkdirSync(this.p(rel), { mode });
  }
  create(rel: string, mode: number): LayerFile {
    const fd = openSync(this.p(rel), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    return {
      write: (b) => {
        for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off);
      },
      close: () => closeSync(fd),
    };
  }
  symlink(target: string, rel: string): void {
    symlinkSync(target, this.p(rel));
  }
  link(existingRel: string, rel: string): void {
    linkSync(this.p(existingRel), this.p(rel));
  }
  mknod(rel: string, type: 'char' | 'block' | 'fifo', mode: number, major: number, minor: number): void {
    const t = type === 'char' ? S_IFCHR : type === 'block' ? S_IFBLK : S_IFIFO;
    nativeAddon().mknod(this.p(rel), t | (mode & 0o7777), major, minor);
  }
  remove(rel: string): void {
    rmSync(this.p(rel), { recursive: true, force: true });
  }
  lchown(rel: string, uid: number, gid: number): void {
    lchownSync(this.p(rel), uid, gid);
  }
  chmod(rel: string, mode: number): void {
    chmodSync(this.p(rel), mode);
  }
  lutimes(rel: string, mtime: number): void {
    lutimesSync(this.p(rel), mtime, mtime);
  }
  lsetxattr(rel: string, name: string, value: Buffer): void {
    nativeAddon().lsetxattr(this.p(rel), name, value);
  }
}
