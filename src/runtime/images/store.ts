// The image store: content-addressed, under ROOT/images.
//   index.json        images (by config digest), tags, layers (a Store: locked, atomic)
//   blobs/sha256/HEX  image configs as they came
//   layers/HEX/       one unpacked layer per diff ID, shared by every image that has it
// Layers are unpacked into a temp directory first and renamed into place under the
// lock, so a crash leaves at most a temp directory, which the next writer removes.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, createReadStream, createWriteStream, openSync, readSync, realpathSync, readFileSync, rmSync, statSync, mkdirSync, renameSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { zstdAddon } from '../../system/real/addon.js';
import { Store } from '../../store/store.js';
import type { FileOps, LockOps } from '../../system/kernel.js';
import type { Logger } from '../../log.js';
import { ConflictError, ImageInvalidError, NotFoundError, UnsupportedError } from '../../errors.js';
import { TAR_END, TarReader, tarHeader, tarPadding } from './tar.js';
import { LayerUnpacker, type LayerFs } from './unpack.js';
import { parseRef, refKey } from './ref.js';
import { mergeEnv } from '../spec.js';

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
  /** NAME@sha256:HEX of the manifests it was pulled by. */
  repoDigests?: string[];
}

/** A layer blob as it came (compressed or not): what `save` and `push` give out again. */
export interface BlobRecord {
  digest: string;
  mediaType: string;
  size: number;
}

export interface ImageState {
  version: 1;
  images: Record<string, ImageRecord>;
  /** "name:tag" -> image ID */
  tags: Record<string, string>;
  /** diff ID -> unpacked size, and the blob it came as */
  layers: Record<string, { size: number; blob?: BlobRecord }>;
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
/** The digest a path names when it is blobs/sha256/HEX (docker save since 25, and tsnet's). */
const blobName = (rel: string) => (/^blobs\/sha256\/[a-f0-9]{64}$/.test(rel) ? `sha256:${rel.slice(13)}` : undefined);
const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** A zstd stream through the native decoder; a stream cut short mid-frame is an error. */
function zstdStream(): Transform {
  const dec = new (zstdAddon().Decoder)();
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        cb(null, dec.push(chunk));
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      cb(dec.end() ? null : new Error('zstd: unexpected end of data'));
    },
  });
}

/** What a layer file held once unpacked. */
export interface UnpackedLayer {
  /** sha256 of the uncompressed tar. */
  diffId: string;
  size: number;
  /** The temp directory it went to. */
  tmp: string;
  /** The layer file: its digest, media type and size. */
  blob: BlobRecord;
  /** Where the layer file is, and whether it may be moved into the store (a temp file) or must be copied. */
  source: { path: string; move: boolean };
}

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

  /** A new temp directory of this process's, swept once it is gone. */
  tmpDir(): string {
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

  /** The layer of this diff ID, when the store has it unpacked. */
  hasLayer(diffId: string, s: ImageState = this.read()): boolean {
    return Boolean(s.layers[diffId]) && existsSync(this.layerDir(diffId));
  }

  /**
   * Unpacks a layer file (tar, gzip- or zstd-compressed tar) into a new temp
   * directory; checks the file against expected (its sha256 digest) when given.
   * Returns the diff ID (sha256 of the uncompressed tar) and where it went.
   * move says the file is a temp file the store may take.
   */
  async unpackLayer(path: string, expected?: string, move = false): Promise<UnpackedLayer> {
    const magic = sniff(path);
    const zst = startsWith(magic, ZSTD);
    const gz = startsWith(magic, GZIP);
    const tmp = this.tmpDir();
    const raw = createHash('sha256');
    const diff = createHash('sha256');
    const unpacker = new LayerUnpacker(this.d.layerFs(tmp));
    const tar = new TarReader(unpacker);
    try {
      const file = createReadStream(path);
      file.on('data', (c) => raw.update(c as Buffer));
      const stream: Readable = gz ? file.pipe(createGunzip()) : zst ? file.pipe(zstdStream()) : file;
      if (gz || zst) file.on('error', (e) => stream.destroy(e));
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
      const mediaType = gz ? MEDIA.ociLayerGzip : zst ? MEDIA.ociLayerZstd : MEDIA.ociLayer;
      return { diffId: `sha256:${diff.digest('hex')}`, size: unpacker.size, tmp, blob: { digest: got, mediaType, size: statSync(path).size }, source: { path, move } };
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
  async commit(configText: string, unpacked: Array<{ diffId: string; size?: number; tmp?: string; blob?: BlobRecord; source?: UnpackedLayer['source'] }>, tags: string[], extra: { repoDigests?: string[] } = {}): Promise<ImageRecord> {
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
        const had = s.layers[u.diffId];
        if (had && existsSync(dst)) {
          if (u.tmp) rmSync(u.tmp, { recursive: true, force: true });
        } else if (u.tmp) {
          rmSync(dst, { recursive: true, force: true }); // a half-removed one from a crash
          renameSync(u.tmp, dst);
        } else {
          throw new ImageInvalidError(`layer ${u.diffId} is neither in the store nor unpacked`);
        }
        let blob = had?.blob;
        if (u.blob && u.source && (!blob || !existsSync(this.blobPath(blob.digest)))) {
          this.placeBlob(u.source, u.blob.digest);
          blob = u.blob;
        }
        s.layers[u.diffId] = { size: had?.size ?? u.size ?? 0, ...(blob ? { blob } : {}) };
      }
      this.d.files.replace(join(this.dir, 'blobs', 'sha256', hexOf(id)), configText, { mode: 0o600 });
      const image: ImageRecord = {
        id,
        layers: diffIds,
        created: cfg.created ?? new Date().toISOString(),
        architecture: cfg.architecture ?? 'amd64',
        os: cfg.os ?? 'linux',
        config: cfg.config ?? {},
        size: diffIds.reduce((a, l) => a + (s.layers[l]?.size ?? 0), 0),
      };
      const digests = new Set([...(s.images[id]?.repoDigests ?? []), ...(extra.repoDigests ?? [])]);
      if (digests.size) image.repoDigests = [...digests].sort();
      s.images[id] = image;
      for (const t of tags) s.tags[t] = id;
      tx.write(s);
      return image;
    });
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', hexOf(digest));
  }

  /** Puts a layer file into blobs/ by its digest (under the lock: renamed into place whole). */
  private placeBlob(source: UnpackedLayer['source'], digest: string): void {
    const dst = this.blobPath(digest);
    if (source.move) {
      renameSync(source.path, dst);
      return;
    }
    const tmp = `${dst}.tmp-${process.pid}`;
    copyFileSync(source.path, tmp);
    renameSync(tmp, dst);
  }

  /** The diff ID of the layer the store holds as this blob, if it does. */
  layerOfBlob(digest: string, s: ImageState = this.read()): string | undefined {
    const hit = Object.entries(s.layers).find(([, l]) => l.blob?.digest === digest);
    return hit && this.hasLayer(hit[0], s) && existsSync(this.blobPath(digest)) ? hit[0] : undefined;
  }

  /** Unpacks each layer file, but for blobs (by digest) the store has already. */
  private async unpackAll(layers: Array<{ path: string; digest?: string; move?: boolean }>): Promise<Array<UnpackedLayer | { diffId: string }>> {
    const out: Array<UnpackedLayer | { diffId: string }> = [];
    const s = this.read();
    try {
      for (const l of layers) {
        const known = l.digest && this.layerOfBlob(l.digest, s);
        out.push(known ? { diffId: known } : await this.unpackLayer(l.path, l.digest, l.move));
      }
      return out;
    } catch (err) {
      for (const u of out) if ('tmp' in u) rmSync(u.tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** `tsnet image import ROOTFS.tar NAME[:TAG]`: a one-layer image from a filesystem tarball. */
  async importRootfs(source: string | NodeJS.ReadableStream, ref: string | undefined, opts: { changes?: ImageConfigBody } = {}): Promise<ImageRecord> {
    const tags = ref ? [refKey(parseRef(ref))] : [];
    let path: string;
    let layer: UnpackedLayer;
    if (typeof source === 'string') {
      path = source;
      if (!existsSync(path)) throw new NotFoundError(`${path}: no such file`);
      layer = await this.unpackLayer(path);
    } else {
      path = 'stdin';
      const tmp = this.tmpDir();
      const file = join(tmp, 'layer');
      try {
        await pipeline(source, createWriteStream(file, { mode: 0o600 }));
        layer = await this.unpackLayer(file, undefined, true);
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        throw err;
      }
    }
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: { ...opts.changes, Env: mergeEnv(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], opts.changes?.Env ?? []) },
      rootfs: { type: 'layers', diff_ids: [layer!.diffId] },
      history: [{ created: new Date().toISOString(), comment: `imported from ${path}` }],
    };
    return this.commit(JSON.stringify(config), [layer!], tags);
  }

  /**
   * `tsnet load -i ARCHIVE`: a `docker save` archive or an OCI image layout, as a
   * tar file (gzip allowed) or a directory. Returns each image with its tags.
   */
  async load(source: string | NodeJS.ReadableStream): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
    if (typeof source !== 'string') {
      // A stream (stdin): into a temp file first, as the archive is read out of order.
      const tmp = this.tmpDir();
      try {
        const file = join(tmp, 'archive.tar');
        await pipeline(source, createWriteStream(file, { mode: 0o600 }));
        return await this.load(file);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    const path = source;
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
      const move = cleanup !== undefined;
      if (existsSync(join(dir, 'manifest.json'))) return await this.loadDockerArchive(dir, move);
      if (existsSync(join(dir, 'index.json')) && existsSync(join(dir, 'oci-layout'))) return await this.loadOciLayout(dir, move);
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

  private async loadDockerArchive(dir: string, move: boolean): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
    const manifest = this.json(dir, 'manifest.json', 'docker archive');
    if (!Array.isArray(manifest)) throw new ImageInvalidError('docker archive: manifest.json is not a list');
    const out: Array<{ image: ImageRecord; tags: string[] }> = [];
    const uses = new Map<string, number>();
    for (const m of manifest) for (const l of Array.isArray(m?.Layers) ? m.Layers : []) uses.set(l, (uses.get(l) ?? 0) + 1);
    for (const m of manifest as Array<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }>) {
      if (typeof m.Config !== 'string' || !Array.isArray(m.Layers)) throw new ImageInvalidError('docker archive: a manifest entry lacks Config or Layers');
      const configText = readFileSync(inside(dir, m.Config, 'docker archive'), 'utf8');
      const tags = (m.RepoTags ?? []).map((t) => refKey(parseRef(t)));
      // A layer file two images list is copied, not moved, so that the second finds it.
      const layers = await this.unpackAll(m.Layers.map((l) => ({ path: inside(dir, l, 'docker archive'), move: move && uses.get(l) === 1, digest: blobName(l) })));
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

  private async loadOciLayout(dir: string, move: boolean): Promise<Array<{ image: ImageRecord; tags: string[] }>> {
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
      const layers = await this.unpackAll(doc.layers.map((l: { digest: string }) => ({ path: this.blob(dir, l.digest), digest: l.digest, move })));
      // A bare tag in ref.name ("latest", as skopeo writes it) names no repository: untagged.
      let tags: string[] = [];
      if (refName && /[/:]|^[a-z0-9]/.test(refName) && (refName.includes(':') || refName.includes('/'))) tags = [refKey(parseRef(refName))];
      out.push({ image: await this.commit(configText, layers, tags), tags });
    };
    if (!Array.isArray(index.manifests) || !index.manifests.length) throw new ImageInvalidError('OCI layout: index.json lists no manifests');
    for (const m of index.manifests) await visit(m);
    return out;
  }

  // ---------------------------------------------------------------- save

  /**
   * `tsnet save`: the images refs name, as one tar that is both an OCI image layout
   * (oci-layout, index.json, blobs/sha256) and a docker save archive (manifest.json
   * naming the same blobs), as docker save writes since Docker 25. A bare repository
   * name takes every tag it has. Every file is opened before the first byte is
   * written, so a removal meanwhile cannot cut the archive short.
   */
  async save(refs: string[], out: Writable): Promise<void> {
    const s = this.read();
    const chosen = new Map<string, Set<string>>(); // image ID -> tags
    for (const ref of refs) {
      const bare = !/[:@]/.test(ref.slice(ref.lastIndexOf('/') + 1));
      const repoTags = bare ? Object.keys(s.tags).filter((t) => t.slice(0, t.lastIndexOf(':')) === ref) : [];
      if (repoTags.length) {
        for (const t of repoTags) (chosen.get(s.tags[t]!) ?? chosen.set(s.tags[t]!, new Set()).get(s.tags[t]!)!).add(t);
        continue;
      }
      const im = this.resolve(ref, s);
      const set = chosen.get(im.id) ?? chosen.set(im.id, new Set()).get(im.id)!;
      let key: string | undefined;
      try {
        key = refKey(parseRef(ref));
      } catch {
        key = undefined;
      }
      if (key && s.tags[key] === im.id) set.add(key);
    }
    type Entry = { name: string; fd?: number; text?: Buffer; size: number };
    const files: Entry[] = [];
    const seen = new Set<string>();
    /** Adds a blob to the archive once; returns its name there. */
    const blob = (digest: string, text?: Buffer): string => {
      const name = `blobs/sha256/${hexOf(digest)}`;
      if (!seen.has(name)) {
        seen.add(name);
        if (text) files.push({ name, text, size: text.length });
        else {
          const path = this.blobPath(digest);
          let fd: number;
          try {
            fd = openSync(path, 'r');
          } catch {
            throw new NotFoundError(`blob ${digest} is missing from the store (${path})`);
          }
          files.push({ name, fd, size: statSync(path).size });
        }
      }
      return name;
    };
    const index: Array<Record<string, unknown>> = [];
    const dockerManifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
    try {
      for (const [id, tags] of chosen) {
        const im = s.images[id]!;
        const config = blob(id);
        const configSize = files.find((f) => f.name === config)!.size;
        const layers = im.layers.map((l) => {
          const b = s.layers[l]?.blob;
          if (!b) throw new UnsupportedError(`image ${hexOf(id).slice(0, 12)}: layer ${l} has no stored blob to save (pull or load the image again)`);
          return { ...b, path: blob(b.digest) };
        });
        const manifest = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA.ociManifest,
          config: { mediaType: MEDIA.ociConfig, digest: id, size: configSize },
          layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
        }));
        const mdigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
        blob(mdigest, manifest);
        const desc = { mediaType: MEDIA.ociManifest, digest: mdigest, size: manifest.length };
        if (!tags.size) index.push(desc);
        for (const t of [...tags].sort()) {
          index.push({ ...desc, annotations: { 'io.containerd.image.name': t, 'org.opencontainers.image.ref.name': t.slice(t.lastIndexOf(':') + 1) } });
        }
        dockerManifest.push({ Config: config, RepoTags: [...tags].sort(), Layers: layers.map((l) => l.path) });
      }
      const text = (name: string, v: unknown) => {
        const b = Buffer.from(JSON.stringify(v));
        files.push({ name, text: b, size: b.length });
      };
      text('oci-layout', { imageLayoutVersion: '1.0.0' });
      text('index.json', { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: index });
      text('manifest.json', dockerManifest);
      const mtime = Math.floor(Date.now() / 1000);
      async function* body(): AsyncGenerator<Buffer> {
        yield tarHeader('blobs/', { dir: true, mtime });
        yield tarHeader('blobs/sha256/', { dir: true, mtime });
        for (const f of files) {
          yield tarHeader(f.name, { size: f.size, mtime });
          if (f.text) yield f.text;
          else {
            let left = f.size;
            for await (const c of createReadStream('', { fd: f.fd!, autoClose: false, start: 0 })) {
              const b = c as Buffer;
              left -= b.length;
              yield b;
            }
            if (left !== 0) throw new ImageInvalidError(`${f.name} changed size while being saved`);
          }
          yield tarPadding(f.size);
        }
        yield TAR_END;
      }
      await pipeline(Readable.from(body()), out, { end: out !== process.stdout });
    } finally {
      for (const f of files) if (f.fd !== undefined) closeSync(f.fd);
    }
  }

  /** Deletes blob files no image or layer of s refers to (under the lock). */
  private sweepBlobs(s: ImageState): void {
    const dir = join(this.dir, 'blobs', 'sha256');
    if (!existsSync(dir)) return;
    const keep = new Set<string>([...Object.keys(s.images).map(hexOf), ...Object.values(s.layers).flatMap((l) => (l.blob ? [hexOf(l.blob.digest)] : []))]);
    for (const n of readdirSync(dir)) if (!keep.has(n)) rmSync(join(dir, n), { force: true });
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
      tx.write(s);
      // After the record: a crash here leaves an unreferenced file or directory, never a
      // reference to a missing one; and the next removal takes what an earlier crash left.
      for (const l of gone) rmSync(this.layerDir(l), { recursive: true, force: true });
      this.sweepBlobs(s);
    });
    return { lines, failed };
  }
}
