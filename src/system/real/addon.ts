// Loads the native addon built from native/ by node-gyp.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  withNetns<T>(fd: number, fn: () => T): T;
  createNetns(path: string): void;
  bindMount(src: string, dst: string): void;
  umount(path: string, detach?: boolean): boolean;
  flock(fd: number, op: 'ex' | 'sh' | 'un', nonBlocking?: boolean): boolean;
  fdInode(fd: number): number;
  /** The uid of the peer of a connected unix socket (SO_PEERCRED). */
  peerUid(fd: number): number;
  bindSocket(family: 4 | 6, type: 'tcp' | 'udp', address: string, port: number): number;
  /** Serves a bound TCP socket with the native splice relay; returns an id for spliceStop. */
  spliceListen(fd: number, targetIP: string, targetPort: number, backlog: number): number;
  spliceStop(id: number): boolean;
}

function findAddon(): string {
  // dist/src/system/real -> repo root is four levels up; src/system/real (tsx) is three.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'native', 'build', 'Release', 'tsnet_native.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('tsnet native addon not built: run `npm install` (or `npm run build`) in the repository');
}

let loaded: NativeAddon | undefined;
/** The addon is a process-wide resource by nature (a loaded shared object). */
export function nativeAddon(): NativeAddon {
  loaded ??= createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return loaded;
}
