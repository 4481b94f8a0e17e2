// The image store: content-addressed, under ROOT/images.
//   index.json        images (by config digest), tags, layers (a Store: locked, atomic)
//   blobs/sha256/HEX  image configs as they came
//   layers/HEX/       one unpacked layer per diff ID, shared by every image that has it
// Layers are unpacked into a temp directory first and renamed into place under the
// lock, so a crash leaves at most a temp directory, which the next writer removes.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, readSync, realpathSync, readFileSync, rmSync, statSync, mkdirSync, renameSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { Store } from '../../store/store.js';
import type { FileOps, LockOps } from '../../system/kernel.js';
import type { Logger } from '../../log.js';
import { ConflictError, ImageInvalidError, NotFoundError, UnsupportedError } from '../../errors.js';
import { TarReader } from './tar.js';
import { LayerUnpacker, type LayerFs } from './unpack.js';
import { parseRef, refKey } from './ref.js';

/** The part of an OCI image config tsnet reads (Docker's keys). */
export interface ImageConfigBody {
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, object>;
  StopSignal?: string;
  Labels?: Record<string, string> | null;
  Volumes?: Record<string, object> | null;
}

export interface ImageRecord {
  /** sha256:HEX of the config blob: the image ID. */
  id: string;
  /** Diff IDs, bottom layer first. */
  layers: string[];
  created: string;
  architecture: string;
  os: string;
  config: ImageConfigBody;
  /** Bytes of unpacked content. */
  size: number;
}

export interface ImageState {
  version: 1;
  images: Record<string, ImageRecord>;
  /** "name:tag" -> image ID */
  tags: Record<string, string>;
  /** diff ID -> unpacked size */
  layers: Record<string, { size: number }>;
}

const emptyImages = (): ImageState => ({ version: 1, images: {}, tags: {}, layers: {} });

function parseImageState(raw: unknown): ImageState {
  const s = raw as ImageState;
  if (!s || typeof s !== 'object' || s.version !== 1 || typeof s.images !== 'object' || typeof s.tags !== 'object' || typeof s.layers !== 'object') {
    throw new Error('not an image index of version 1');
  }
  for (const [k, id] of Object.entries(s.tags)) if (!s.images[id]) throw new Error(`tags.${k} names no image`);
  return s;
}

export interface ImageStoreDeps {
  root: string;
  files: FileOps;
  locks: LockOps;
  layerFs: (dir: string) => LayerFs;
  log: Logger;
}

const hexOf = (digest: string) => digest.replace(/^sha256:/, '');
const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

function sniff(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const n = readSync(fd, b, 0, 4, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
const startsWith = (b: Buffer, magic: number[]) => magic.every((m, i) => b[i] === m);

/** A path inside dir, symlinks resolved; refuses one that resolves outside it. */
function inside(dir: string, rel: string, what: string): string {
  let real: string;
  try {
    real = realpathSync(join(dir, rel));
  } catch {
    throw new ImageInvalidError(`${what}: "${rel}" is missing from the archive`);
  }
  const base = realpathSync(dir);
  if (real !== base && !real.startsWith(`${base}/`)) throw new ImageInvalidError(`${what}: "${rel}" points outside the archive`);
  return real;
}

export interface ImageSummary {
  id: string;
  repoTags: string[];
  created: string;
  size: number;
}

export class ImageStore {
  readonly dir: string;
  private readonly store: Store<ImageState>;

  constructor(private readonly d: ImageStoreDeps) {
    this.dir = join(d.root, 'images');
    this.store = new Store<ImageState>(this.dir, emptyImages, d.log, { validate: parseImageState, kernel: d.files && d.locks ? { files: d.files, locks: d.locks } : undefined });
  }

  layerDir(diffId: string): string {
    return join(this.dir, 'layers', hexOf(diffId));
  }

  read(): ImageState {
    return this.store.read();
  }

  /** The image a reference names: a tag (":latest" implied), a full ID, or an ID prefix. */
  resolve(ref: string, s: ImageState = this.read()): ImageRecord {
    const hex = ref.replace(/^sha256:/, '');
    if (/^[a-f0-9]{4,64}$/.test(hex)) {
      const hits = Object.keys(s.images).filter((id) => hexOf(id).startsWith(hex));
      if (hits.length === 1 && (ref.startsWith('sha256:') || !s.tags[refKey(parseRef(ref))])) return s.images[hits[0]!]!;
      if (hits.length > 1) throw new ConflictError(`image ID prefix "${ref}" is ambiguous`);
    }
    let key: string;
    try {
      key = refKey(parseRef(ref));
    } catch {
      throw new NotFoundError(`No such image: ${ref}`);
    }
    const id = s.tags[key];
    if (!id) throw new NotFoundError(`No such image: ${ref}`);
    return s.images[id]!;
  }

  tagsOf(s: ImageState, id: string): string[] {
    return Object.entries(s.tags).filter(([, v]) => v === id).map(([k]) => k).sort();
  }

  list(): ImageSummary[] {
    const s = this.read();
    return Object.values(s.images)
      .map((im) => ({ id: im.id, repoTags: this.tagsOf(s, im.id), created: im.created, size: im.size }))
      .sort((a, b) => b.created.localeCompare(a.created));
  }

  // ---------------------------------------------------------------- layers

  private tmpDir(): string {
    const t = join(this.dir, 'tmp', `${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(t, { recursive: true, mode: 0o700 });
    return t;
  }

  /** Temp dirs of writers that are gone (their pid names them). */
  private sweepTemps(): void {
    const tmp = join(this.dir, 'tmp');
    if (!existsSync(tmp)) return;
    for (const n of readdirSync(tmp)) {
      const pid = Number(n.split('-')[0]);
      if (pid === process.pid) continue;
      try {
        process.kill(pid, 0);
      } catch {
        rmSync(join(tmp, n), { recursive: true, force: true });
      }
    }
  }

  /**
   * Unpacks a layer file (tar, or gzip-compressed tar) into a new temp directory;
   * checks the file against expected (its sha256 digest) when given. Returns the
   * diff ID (sha256 of the uncompressed tar) and where it went.
   */
  async unpackLayer(path: string, expected?: string): Promise<{ diffId: string; size: number; tmp: string }> {
    const magic = sniff(path);
    if (startsWith(magic, ZSTD)) throw new UnsupportedError(`layer ${path} is zstd-compressed, which this Node cannot decompress (gzip and plain tar are supported)`);
    const gz = startsWith(magic, GZIP);
    const tmp = this.tmpDir();
    const raw = createHash('sha256');
    const diff = createHash('sha256');
    const unpacker = new LayerUnpacker(this.d.layerFs(tmp));
    const tar = new TarReader(unpacker);
    try {
      const file = createReadStream(path);
      file.on('data', (c) => raw.update(c as Buffer));
      const stream: Readable = gz ? file.pipe(createGunzip()) : file;
      if (gz) file.on('error', (e) => stream.destroy(e));
      try {
        for await (const chunk of stream) {
          diff.update(chunk as Buffer);
          tar.write(chunk as Buffer);
        }
      } catch (err) {
        if (err instanceof ImageInvalidError) throw err;
        throw new ImageInvalidError(`layer ${path} is corrupt: ${(err as Error).message}`, { cause: err });
      }
      tar.close();
      unpacker.finish();
      const got = `sha256:${raw.digest('hex')}`;
      if (expected && got !== expected) throw new ImageInvalidError(`layer ${path}: digest mismatch (expected ${expected}, got ${got}): the blob is corrupt or truncated`);
      return { diffId: `sha256:${diff.digest('hex')}`, size: unpacker.size, tmp };
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  // ---------------------------------------------------------------- adding images

  /**
   * Records an image whose layers are unpacked (in temp dirs, or already in the
   * store), tagging it with tags. Layers move into place; a layer the store has
   * already keeps the copy it has.
   */
  private async commit(configText: string, unpacked: Array<{ diffId: string; size: number; tmp?: string }>, tags: string[]): Promise<ImageRecord> {
    let cfg: { architecture?: string; os?: string; created?: string; config?: ImageConfigBody; rootfs?: { diff_ids?: string[] } };
    try {
      cfg = JSON.parse(configText);
    } catch (err) {
      throw new ImageInvalidError(`image config is not JSON: ${(err as Error).message}`);
    }
    const diffIds = cfg.rootfs?.diff_ids ?? [];
    const got = unpacked.map((u) => u.diffId);
    if (diffIds.length !== got.length || diffIds.some((x, i) => x !== got[i])) {
      throw new ImageInvalidError(`image config lists layers ${JSON.stringify(diffIds)} but the archive's layers are ${JSON.stringify(got)}`);
    }
    if (cfg.os && cfg.os !== 'linux') throw new UnsupportedError(`image is for ${cfg.os}, not linux`);
    const id = `sha256:${createHash('sha256').update(configText).digest('hex')}`;
    return this.store.transact(async (tx) => {
      const s = structuredClone(tx.state);
      this.sweepTemps();
      mkdirSync(join(this.dir, 'layers'), { recursive: true, mode: 0o700 });
      mkdirSync(join(this.dir, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
      for (const u of unpacked) {
        const dst = this.layerDir(u.diffId);
        if (s.layers[u.diffId] && existsSync(dst)) {
          if (u.tmp) rmSync(u.tmp, { recursive: true, force: true });
        } else if (u.tmp) {
          rmSync(dst, { recursive: true, force: true }); // a half-removed one from a crash
          renameSync(u.tmp, dst);
        }
        s.layers[u.diffId] = { size: u.size };
      }
      this.d.files.replace(join(this.dir, 'blobs', 'sha256', hexOf(id)), configText, { mode: 0o600 });
      const image: ImageRecord = {
        id,
        layers: diffIds,
        created: cfg.created ?? new Date().toISOString(),
        architecture: cfg.architecture ?? 'amd64',
        os: cfg.os ?? 'linux',
        config: cfg.config ?? {},
        size: unpacked.reduce((a, u) => a + u.size, 0),
      };
      s.images[id] = image;
      for (const t of tags) s.tags[t] = id;
      tx.write(s);
      return image;
    });
  }

  private async unpackAll(layers: Array<{ path: string; digest?: string }>): Promise<Array<{ diffId: string; size: number; tmp: string }>> {
    const out: Array<{ diffId: string; size: number; tmp: string }> = [];
    try {
      for (const l of layers) out.push(await this.unpackLayer(l.path, l.digest));
      return out;
    } catch (err) {
      for (const u of out) rmSync(u.tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** `tsnet image import ROOTFS.tar NAME[:TAG]`: a one-layer image from a filesystem tarball. */
  async importRootfs(path: string, ref: string | undefined, opts: { changes?: ImageConfigBody } = {}): Promise<ImageRecord> {
    const tags = ref ? [refKey(parseRef(ref))] : [];
    if (!existsSync(path)) throw new NotFoundError(`${path}: no such file`);
    const [layer] = await this.unpackAll([{ path }]);
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...opts.changes },
      rootfs: { type: 'layers', diff_ids: [layer!.diffId] },
      history: [{ created: new Date().toISOString(), comment: `imported from ${path}` }],
    };
    return this.commit(JSON.stringify(config), [layer!], tags);
  }

  /**
   * `tsnet load -i ARCHIVE`: a `docker save` archive or an OCI image layout, as a
   * tar file (gzip allowed) or a directory. Returns each image with its tags.
   */
  async load(path: string): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new NotFoundError(`${path}: no such file or directory`);
    }
    let dir = path;
    let cleanup: string | undefined;
    if (!st.isDirectory()) {
      const u = await this.unpackLayer(path).catch((err) => {
        throw new ImageInvalidError(`${path} is not an image archive: ${(err as Error).message}`, { cause: err });
      });
      dir = cleanup = u.tmp;
    }
    try {
      if (existsSync(join(dir, 'manifest.json'))) return await this.loadDockerArchive(dir);
      if (existsSync(join(dir, 'index.json')) && existsSync(join(dir, 'oci-layout'))) return await this.loadOciLayout(dir);
      throw new ImageInvalidError(`${path} is neither a docker save archive (manifest.json) nor an OCI image layout (oci-layout, index.json)`);
    } finally {
      if (cleanup) rmSync(cleanup, { recursive: true, force: true });
    }
  }

  private json(dir: string, rel: string, what: string): any {
    try {
      return JSON.parse(readFileSync(inside(dir, rel, what), 'utf8'));
    } catch (err) {
      if (err instanceof ImageInvalidError) throw err;
      throw new ImageInvalidError(`${what}: ${rel} is not valid JSON`);
    }
  }

  private async loadDockerArchive(dir: string): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
    const manifest = this.json(dir, 'manifest.json', 'docker archive');
    if (!Array.isArray(manifest)) throw new ImageInvalidError('docker archive: manifest.json is not a list');
    const out: Array<{ image: ImageRecord; tags: string[] }> = [];
    for (const m of manifest as Array<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }>) {
      if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) throw new ImageInvalidError('docker archive: a manifest entry lacks Config or Layers');
      const configText = readFileSync(inside(dir, m.Config, 'docker archive'), 'utf8');
      const tags = (m.RepoTags ?? []).map((t) => refKey(parseRef(t)));
      const layers = await this.unpackAll(m.Layers.map((l) => ({ path: inside(dir, l, 'docker archive') })));
      out.push({ image: await this.commit(configText, layers, tags), tags });
    }
    return out;
  }

  private blob(dir: string, digest: unknown): string {
    if (typeof digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(digest)) throw new ImageInvalidError(`OCI layout: bad digest ${JSON.stringify(digest)}`);
    return inside(dir, join('blobs', 'sha256', hexOf(digest)), 'OCI layout');
  }

  private verified(dir: string, digest: string): string {
    const text = readFileSync(this.blob(dir, digest));
    const got = `sha256:${createHash('sha256').update(text).digest('hex')}`;
    if (got !== digest) throw new ImageInvalidError(`OCI layout: blob ${digest} has digest ${got}: corrupt`);
    return text.toString('utf8');
  }

  private async loadOciLayout(dir: string): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
    const index = this.json(dir, 'index.json', 'OCI layout');
    const out: Array<{ image: ImageRecord; tags: string[] }> = [];
    const visit = async (desc: { mediaType?: string; digest?: string; annotations?: Record<string, string>; platform?: { os?: string; architecture?: string } }, name?: string): Promise<void> => {
      const doc = JSON.parse(this.verified(dir, String(desc.digest)));
      const refName = desc.annotations?.['io.containerd.image.name'] ?? desc.annotations?.['org.opencontainers.image.ref.name'] ?? name;
      if (Array.isArray(doc.manifests)) {
        // An index: this platform's manifest.
        const pick = doc.manifests.find((x: typeof desc) => !x.platform || (x.platform.os === 'linux' && x.platform.architecture === 'amd64'));
        if (!pick) throw new UnsupportedError('OCI layout: no linux/amd64 manifest in the index');
        return visit(pick, refName);
      }
      if (!doc.config || !Array.isArray(doc.layers)) throw new ImageInvalidError(`OCI layout: ${desc.digest} is not an image manifest`);
      const configText = this.verified(dir, doc.config.digest);
      const layers = await this.unpackAll(doc.layers.map((l: { digest: string; mediaType?: string }) => {
        if (l.mediaType?.includes('zstd')) throw new UnsupportedError(`layer ${l.digest} is zstd-compressed, which this Node cannot decompress`);
        return { path: this.blob(dir, l.digest), digest: l.digest };
      }));
      // A bare tag in ref.name ("latest", as skopeo writes it) names no repository: untagged.
      let tags: string[] = [];
      if (refName && /[/:]|^[a-z0-9]/.test(refName) && (refName.includes(':') || refName.includes('/'))) tags = [refKey(parseRef(refName))];
      out.push({ image: await this.commit(configText, layers, tags), tags });
    };
    if (!Array.isArray(index.manifests) || !index.manifests.length) throw new ImageInvalidError('OCI layout: index.json lists no manifests');
    for (const m of index.manifests) await visit(m);
    return out;
  }

  // ---------------------------------------------------------------- tags and removal

  async tag(source: string, target: string): Promise<void> {
    const key = refKey(parseRef(target));
    await this.store.transact(async (tx) => {
      const s = structuredClone(tx.state);
      const im = this.resolve(source, s);
      s.tags[key] = im.id;
      tx.write(s);
    });
  }

  /**
   * `rmi`: a tag of an image with other tags is only untagged; otherwise the image
   * goes, with every layer no other image has. inUse names a container that uses
   * an image (then it stays: Docker's conflict).
   */
  async remove(refs: string[], inUse: (id: string) => string | undefined, opts: { force?: boolean } = {}): Promise<{ lines: string[]; failed: Array<{ ref: string; error: unknown }> }> {
    const lines: string[] = [];
    const failed: Array<{ ref: string; error: unknown }> = [];
    await this.store.transact(async (tx) => {
      const s = structuredClone(tx.state);
      for (const ref of refs) {
        try {
          const im = this.resolve(ref, s);
          const tags = this.tagsOf(s, im.id);
          let key: string | undefined;
          try {
            key = refKey(parseRef(ref));
          } catch {
            key = undefined;
          }
          const byTag = key !== undefined && s.tags[key] === im.id;
          if (byTag && tags.length > 1) {
            delete s.tags[key!];
            lines.push(`Untagged: ${key}`);
            continue;
          }
          if (!byTag && tags.length > 1 && !opts.force) throw new ConflictError(`conflict: unable to delete ${hexOf(im.id).slice(0, 12)} (must be forced) - image is referenced in multiple repositories`);
          const user = inUse(im.id);
          if (user) throw new ConflictError(`conflict: unable to remove repository reference "${ref}" (must force) - container ${user} is using its referenced image ${hexOf(im.id).slice(0, 12)}`);
          for (const t of tags) {
            delete s.tags[t];
            lines.push(`Untagged: ${t}`);
          }
          delete s.images[im.id];
          lines.push(`Deleted: ${im.id}`);
        } catch (err) {
          failed.push({ ref, error: err });
        }
      }
      // Layers no image has any more.
      const used = new Set(Object.values(s.images).flatMap((x) => x.layers));
      const gone = Object.keys(s.layers).filter((l) => !used.has(l));
      for (const l of gone) delete s.layers[l];
      for (const id of Object.keys(tx.state.images)) if (!s.images[id]) this.d.files.remove(join(this.dir, 'blobs', 'sha256', hexOf(id)));
      tx.write(s);
      // After the record: a crash here leaves an unreferenced directory, never a reference to a missing one.
      for (const l of gone) rmSync(this.layerDir(l), { recursive: true, force: true });
    });
    return { lines, failed };
  }
}
