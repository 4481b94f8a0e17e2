// `tsnet pull REF`: manifest (through an index to this platform's), config, then
// the layers the store lacks, three at a time, each checked against its digest
// while it downloads, then against the config's diff ID once unpacked. Nothing is
// recorded until every layer is in hand; a failure or a crash leaves only temp
// files, which the next writer sweeps.
import { createHash } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { ImageInvalidError, UnsupportedError } from '../../errors.js';
import { parseRef, refKey, registryOf } from './ref.js';
import { readAll, RegistryClient } from './registry.js';
import type { ImageRecord, ImageStore, UnpackedLayer } from './store.js';

export interface PullResult {
  image: ImageRecord;
  /** The tag (or name@digest) it was filed under. */
  ref: string;
  /** The manifest digest: NAME@DIGEST goes into RepoDigests. */
  digest: string;
  /** True when the store had it all already. */
  upToDate: boolean;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** The GOARCH name of this machine's architecture. */
export function goArch(arch: string = process.arch): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  urls?: string[];
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** This platform's manifest in an index (linux, this architecture; no attestation entries). */
export function pickPlatform(manifests: Descriptor[], arch = goArch()): Descriptor | undefined {
  return manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ?? manifests.find((m) => !m.platform);
}

function descriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (!x || typeof x.digest !== 'string' || !DIGEST.test(x.digest)) throw new ImageInvalidError(`${what}: bad descriptor ${JSON.stringify(d)?.slice(0, 200)}`);
  return x;
}

/** Passes bytes through, hashing and counting them, and refusing more than limit. */
function hasher(limit: number | undefined): Transform & { digest(): string; bytes: number } {
  const h = createHash('sha256');
  const t = new Transform({
    transform(chunk: Buffer, _e, cb) {
      t.bytes += chunk.length;
      if (limit !== undefined && t.bytes > limit) return cb(new ImageInvalidError(`blob is larger than its manifest says (${limit} bytes)`));
      h.update(chunk);
      cb(null, chunk);
    },
  }) as Transform & { digest(): string; bytes: number };
  t.bytes = 0;
  t.digest = () => `sha256:${h.digest('hex')}`;
  return t;
}

export async function pull(store: ImageStore, client: RegistryClient, text: string, progress: (line: string) => void = () => {}): Promise<PullResult> {
  const ref = parseRef(text);
  const { host, path } = registryOf(ref.name);
  const reference = ref.digest ?? ref.tag!;
  const where = `${ref.name}${ref.digest ? `@${ref.digest}` : `:${ref.tag}`}`;
  if (!ref.digest) progress(`${ref.tag}: Pulling from ${path}`);

  let { body, mediaType } = await client.manifest(host, path, reference);
  const digest = sha256(body);
  if (ref.digest && digest !== ref.digest) throw new ImageInvalidError(`${where}: the registry's manifest has digest ${digest}`);
  let doc = JSON.parse(body.toString('utf8'));
  if (Array.isArray(doc.manifests)) {
    const pick = pickPlatform(doc.manifests);
    if (!pick) throw new UnsupportedError(`${where}: no manifest for linux/${goArch()} in the image index (it has ${doc.manifests.map((m: Descriptor) => `${m.platform?.os}/${m.platform?.architecture}`).join(', ')})`);
    const d = descriptor(pick, where);
    ({ body, mediaType } = await client.manifest(host, path, d.digest));
    if (sha256(body) !== d.digest) throw new ImageInvalidError(`${where}: manifest ${d.digest} does not match its digest`);
    doc = JSON.parse(body.toString('utf8'));
  }
  if (doc.schemaVersion === 1 || /distribution\.manifest\.v1\+/.test(mediaType)) throw new UnsupportedError(`${where}: Docker image manifest schema 1 is deprecated and not supported`);
  if (!doc.config || !Array.isArray(doc.layers)) throw new ImageInvalidError(`${where}: not an image manifest (media type ${mediaType})`);
  const config = descriptor(doc.config, where);
  const layers: Descriptor[] = doc.layers.map((l: unknown) => descriptor(l, where));
  for (const l of layers) {
    if (l.urls?.length || /foreign|nondistributable/.test(l.mediaType ?? '')) throw new UnsupportedError(`${where}: layer ${l.digest} is a foreign layer (${l.mediaType}), which tsnet does not fetch`);
  }

  const cres = await client.blob(host, path, config.digest);
  const configText = await readAll(cres.body, 8 << 20);
  if (sha256(configText) !== config.digest) throw new ImageInvalidError(`${where}: config blob does not match its digest ${config.digest}`);
  const cfg = JSON.parse(configText.toString('utf8'));
  const diffIds: string[] = cfg.rootfs?.diff_ids ?? [];
  if (diffIds.length !== layers.length) throw new ImageInvalidError(`${where}: the config lists ${diffIds.length} layers, the manifest ${layers.length}`);

  const tag = refKey(ref);
  const repoDigest = `${ref.name}@${digest}`;
  const s = store.read();
  const needed = layers.map((l, i) => ({ l, diffId: diffIds[i]!, have: store.hasLayer(diffIds[i]!, s) }));
  const upToDate = s.tags[tag] === config.digest && needed.every((n) => n.have);

  const fetched: Array<UnpackedLayer | { diffId: string }> = needed.map((n) => ({ diffId: n.diffId }));
  const tmp = store.tmpDir();
  try {
    for (const n of needed) progress(`${short(n.l.digest)}: ${n.have ? 'Already exists' : 'Pulling fs layer'}`);
    const queue = needed.map((n, i) => ({ ...n, i })).filter((n) => !n.have);
    let failed = false;
    const worker = async () => {
      for (let job = queue.shift(); job && !failed; job = queue.shift()) {
        const file = join(tmp, job.l.digest.slice(7));
        const res = await client.blob(host, path, job.l.digest);
        const h = hasher(job.l.size);
        try {
          await pipeline(res.body, h, createWriteStream(file, { mode: 0o600 }));
        } catch (err) {
          if (err instanceof ImageInvalidError) throw new ImageInvalidError(`${where}: layer ${job.l.digest}: ${err.message}`);
          throw new ImageInvalidError(`${where}: download of layer ${job.l.digest} failed: ${(err as Error).message}`, { cause: err });
        }
        if (job.l.size !== undefined && h.bytes !== job.l.size) throw new ImageInvalidError(`${where}: layer ${job.l.digest} is ${h.bytes} bytes, the manifest says ${job.l.size}: truncated`);
        const got = h.digest();
        if (got !== job.l.digest) throw new ImageInvalidError(`${where}: layer ${job.l.digest}: digest mismatch (got ${got}): the blob is corrupt`);
        progress(`${short(job.l.digest)}: Download complete`);
        const u = await store.unpackLayer(file, job.l.digest, true);
        fetched[job.i] = u;
        if (u.diffId !== job.diffId) throw new ImageInvalidError(`${where}: layer ${job.l.digest} unpacks to ${u.diffId}, the config says ${job.diffId}`);
        progress(`${short(job.l.digest)}: Pull complete`);
      }
    };
    // Every worker finishes (or stops after its current layer) before the temp files go.
    const done = await Promise.allSettled([0, 1, 2].map(() => worker().catch((err) => {
      failed = true;
      throw err;
    })));
    const err = done.find((d): d is PromiseRejectedResult => d.status === 'rejected');
    if (err) throw err.reason;
    const image = await store.commit(configText.toString('utf8'), fetched, [tag], { repoDigests: [repoDigest] });
    progress(`Digest: ${digest}`);
    progress(`Status: ${upToDate ? 'Image is up to date' : 'Downloaded newer image'} for ${where}`);
    return { image, ref: tag, digest, upToDate };
  } finally {
    for (const f of fetched) if ('tmp' in f) rmSync(f.tmp, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}
