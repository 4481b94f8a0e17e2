// A streaming tar reader (ustar, pax and GNU long names): push bytes with write(),
// get one callback per entry header and one per piece of its body. It only parses;
// what an entry may do to a filesystem is unpack.ts's decision.
import { ImageInvalidError } from '../../errors.js';

export type TarType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** pax SCHILY.xattr.* records. */
  xattrs: Record<string, Buffer>;
}

export interface TarSink {
  entry(h: TarHeader): void;
  data(chunk: Buffer): void;
  /** The current entry's body is complete. */
  end(): void;
}

const TYPES: Record<string, TarType> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end >= 0 && end < off + len ? end : off + len);
}

function octal(b: Buffer, off: number, len: number, what: string): number {
  if (b[off]! & 0x80) {
    // base-256 (GNU) for values octal cannot hold
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = cstr(b, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new ImageInvalidError(`tar: bad ${what} field "${s}" (not a tar archive?)`);
  return parseInt(s, 8);
}

function parsePax(body: Buffer): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(body.toString('ascii', i, sp));
    if (!Number.isInteger(len) || len <= 0 || i + len > body.length) throw new ImageInvalidError('tar: malformed pax header');
    const rec = body.subarray(sp + 1, i + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out[rec.toString('utf8', 0, eq)] = Buffer.from(rec.subarray(eq + 1));
    i += len;
  }
  return out;
}

export class TarReader {
  private buf: Buffer = Buffer.alloc(0);
  /** What the current body is: nothing, a metadata record, an entry's data, or skipped bytes. */
  private body: 'none' | 'meta' | 'entry' | 'skip' = 'none';
  private remaining = 0;
  private padding = 0;
  private meta?: { kind: 'pax' | 'global' | 'longname' | 'longlink'; parts: Buffer[] };
  private pax: Record<string, Buffer> = {};
  private globalPax: Record<string, Buffer> = {};
  private longName?: string;
  private longLink?: string;
  private zeros = 0;
  done = false;

  constructor(private readonly sink: TarSink) {}

  write(chunk: Buffer): void {
    if (this.done) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    for (;;) {
      if (this.body !== 'none') {
        const n = Math.min(this.remaining, this.buf.length - off);
        if (n > 0) {
          const piece = this.buf.subarray(off, off + n);
          if (this.body === 'meta') this.meta!.parts.push(Buffer.from(piece));
          else if (this.body === 'entry') this.sink.data(piece);
          this.remaining -= n;
          off += n;
        }
        if (this.remaining > 0) break;
        this.finishBody();
      }
      if (this.padding > 0) {
        const n = Math.min(this.padding, this.buf.length - off);
        this.padding -= n;
        off += n;
        if (this.padding > 0) break;
      }
      if (this.buf.length - off < 512) break;
      const h = this.buf.subarray(off, off + 512);
      off += 512;
      if (h.every((x) => x === 0)) {
        if (++this.zeros === 2) {
          this.done = true;
          break;
        }
        continue;
      }
      this.zeros = 0;
      this.header(h);
    }
    this.buf = this.buf.subarray(off);
  }

  /** The input ended: it must have been a whole archive. */
  close(): void {
    if (this.done) return;
    if (this.body !== 'none' || this.padding > 0 || this.buf.length) throw new ImageInvalidError('tar: archive is truncated (an entry is cut short)');
    // Two zero blocks are customary; a stream that ends on a block boundary is accepted.
    this.done = true;
  }

  private finishBody(): void {
    const was = this.body;
    this.body = 'none';
    if (was === 'meta') {
      const data = Buffer.concat(this.meta!.parts);
      const kind = this.meta!.kind;
      this.meta = undefined;
      if (kind === 'pax') this.pax = { ...this.pax, ...parsePax(data) };
      else if (kind === 'global') this.globalPax = { ...this.globalPax, ...parsePax(data) };
      else if (kind === 'longname') this.longName = cstr(data, 0, data.length);
      else this.longLink = cstr(data, 0, data.length);
    } else if (was === 'entry') {
      this.sink.end();
    }
  }

  private startBody(kind: 'meta' | 'entry' | 'skip', size: number): void {
    this.body = kind;
    this.remaining = size;
    this.padding = (512 - (size % 512)) % 512;
    if (size === 0) this.finishBody();
  }

  private header(h: Buffer): void {
    const sum = octal(h, 148, 8, 'checksum');
    let s = 0;
    for (let i = 0; i < 512; i++) s += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (s !== sum) throw new ImageInvalidError('tar: header checksum mismatch (corrupt or not a tar archive)');
    const flag = String.fromCharCode(h[156]!);
    const size = octal(h, 124, 12, 'size');
    const metaKind = flag === 'x' ? 'pax' : flag === 'g' ? 'global' : flag === 'L' ? 'longname' : flag === 'K' ? 'longlink' : undefined;
    if (metaKind) {
      if (size > 1 << 20) throw new ImageInvalidError('tar: metadata record larger than 1 MiB');
      this.meta = { kind: metaKind, parts: [] };
      this.startBody('meta', size);
      return;
    }
    const pax = { ...this.globalPax, ...this.pax };
    const num = (k: string, fallback: number) => (pax[k] !== undefined ? Number(pax[k]!.toString()) : fallback);
    const realSize = num('size', size);
    const type = TYPES[flag];
    if (!type) {
      // Entry kinds with no place in a rootfs (GNU sparse, volume labels) are skipped, body and all.
      this.pax = {};
      this.longName = this.longLink = undefined;
      this.startBody('skip', realSize);
      return;
    }
    const ustar = h.toString('ascii', 257, 262) === 'ustar';
    const prefix = ustar ? cstr(h, 345, 155) : '';
    const name = pax.path?.toString('utf8') ?? this.longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    const linkname = pax.linkpath?.toString('utf8') ?? this.longLink ?? cstr(h, 157, 100);
    const xattrs: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(pax)) if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = v;
    this.pax = {};
    this.longName = this.longLink = undefined;
    const header: TarHeader = {
      name, type, linkname, xattrs,
      mode: octal(h, 100, 8, 'mode') & 0o7777,
      uid: num('uid', octal(h, 108, 8, 'uid')),
      gid: num('gid', octal(h, 116, 8, 'gid')),
      size: type === 'file' ? realSize : 0,
      mtime: Math.floor(num('mtime', octal(h, 136, 12, 'mtime'))),
      devmajor: ustar ? octal(h, 329, 8, 'devmajor') : 0,
      devminor: ustar ? octal(h, 337, 8, 'devminor') : 0,
    };
    this.sink.entry(header);
    if (type === 'file') {
      this.startBody('entry', realSize);
    } else {
      this.sink.end();
      this.startBody('skip', realSize);
    }
  }
}

/** A ustar header for a regular file or directory (names under 100 bytes, as tsnet writes them). */
export function tarHeader(name: string, opts: { size?: number; dir?: boolean; mode?: number; mtime?: number }): Buffer {
  const h = Buffer.alloc(512);
  if (Buffer.byteLength(name) > 99) throw new Error(`tar: name "${name}" is too long for a ustar header`);
  const field = (off: number, len: number, v: number) => {
    if (v < 8 ** (len - 1)) h.write(v.toString(8).padStart(len - 1, '0'), off, 'ascii');
    else {
      // base-256 for sizes octal cannot hold (over 8 GiB)
      h[off] = 0x80;
      for (let i = off + len - 1, x = v; i > off; i--, x = Math.floor(x / 256)) h[i] = x % 256;
    }
  };
  h.write(name, 0, 'utf8');
  field(100, 8, opts.mode ?? (opts.dir ? 0o755 : 0o644));
  field(108, 8, 0);
  field(116, 8, 0);
  field(124, 12, opts.dir ? 0 : opts.size ?? 0);
  field(136, 12, Math.floor(opts.mtime ?? 0));
  h.write(opts.dir ? '5' : '0', 156, 'ascii');
  h.write('ustar\x0000', 257, 'binary');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** Zero bytes that pad a body of size bytes to the next 512-byte block. */
export const tarPadding = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);
/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(1024);
