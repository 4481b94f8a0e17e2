// Loads the native modules built from native/ by node-gyp: the addon (namespaces,
// mounts, locks, credentials) every entry point uses, and the relay only the
// userland proxy loads.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  withNetns<T>(fd: number, fn: () => T): T;
  createNetns(path: string): void;
  bindMount(src: string, dst: string, readOnly?: boolean): void;
  umount(path: string, detach?: boolean): boolean;
  /** One mount(2): source, target, fstype, flags (MS_*), data. */
  mountFs(source: string, target: string, fstype: string, flags: number, data: string): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  lsetxattr(path: string, name: string, value: Buffer): void;
  flock(fd: number, op: 'ex' | 'sh' | 'un', nonBlocking?: boolean): boolean;
  fdInode(fd: number): number;
  /** The uid of the peer of a connected unix socket (SO_PEERCRED). */
  peerUid(fd: number): number;
}

/** The userland proxy's native half (native/src/relay.cc). */
export interface RelayAddon {
  /** Holds a port (TCP: listening, nothing accepted yet; UDP: bound); returns the fd. */
  bindSocket(family: 4 | 6, type: 'tcp' | 'udp', address: string, port: number): number;
  /** Serves a held TCP socket with the native splice relay; returns an id for spliceStop. */
  spliceListen(fd: number, targetIP: string, targetPort: number, backlog: number): number;
  spliceStop(id: number): boolean;
}

/** Streaming zstd decompression (native/src/zstd.cc): Node 20's zlib has none. */
export interface ZstdDecoder {
  /** The bytes this chunk decompressed to (throws on corrupt input). */
  push(chunk: Buffer): Buffer;
  /** True when the input so far ends on a frame boundary (false: truncated). */
  end(): boolean;
}
export interface ZstdAddon {
  Decoder: new () => ZstdDecoder;
}

/** A file of the repository (the bundle's and the compiled tree's location differ). */
export function repoFile(rel: string): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, rel);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

/** A native program built from native/ (the monitor, the init). */
export function nativeProgram(name: string): string {
  return repoFile(join('native', 'build', 'Release', name)) ?? join('/nonexistent', name);
}

function findModule(file: string): string {
  const found = repoFile(join('native', 'build', 'Release', file));
  if (!found) throw new Error(`tsnet native module ${file} not built: run \`npm install\` (or \`npm run build\`) in the repository`);
  return found;
}

let loaded: NativeAddon | undefined;
let relay: RelayAddon | undefined;
let zstd: ZstdAddon | undefined;
/** The addon is a process-wide resource by nature (a loaded shared object). */
export function nativeAddon(): NativeAddon {
  loaded ??= createRequire(import.meta.url)(findModule('tsnet_native.node')) as NativeAddon;
  return loaded;
}
/** The relay, loaded on first use (by the userland proxy only). */
export function relayAddon(): RelayAddon {
  relay ??= createRequire(import.meta.url)(findModule('tsnet_relay.node')) as RelayAddon;
  return relay;
}
/** The zstd decoder, loaded on the first zstd layer. */
export function zstdAddon(): ZstdAddon {
  zstd ??= createRequire(import.meta.url)(findModule('tsnet_zstd.node')) as ZstdAddon;
  return zstd;
}
