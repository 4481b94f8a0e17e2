// Image references as Docker writes them: NAME[:TAG] or NAME@sha256:HEX, where NAME
// is [REGISTRY/]PATH. "busybox" means "busybox:latest".
import { InvalidConfigError } from '../../errors.js';

export interface ImageRef {
  /** Repository name as given, without tag or digest (registry host included when given). */
  name: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d+)?$/;

export function parseRef(text: string): ImageRef {
  const bad = (why: string) => new InvalidConfigError(`invalid reference format "${text}": ${why}`);
  if (!text) throw bad('empty');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('the digest must be sha256: and 64 hex digits');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag "${tag}" must be letters, digits, "_", "." or "-" (at most 128)`);
  }
  const parts = rest.split('/');
  const first = parts[0]!;
  const hasHost = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost && !HOST.test(first)) throw bad(`registry "${first}" is not a host name`);
  for (const p of hasHost ? parts.slice(1) : parts) {
    if (!COMPONENT.test(p)) throw bad(`"${p}" must be lowercase letters, digits and separators (. _ __ -)`);
  }
  if (rest.length > 255) throw bad('name longer than 255 characters');
  return { name: familiar(rest), tag: tag ?? (digest ? undefined : 'latest'), digest };
}

/** Docker's familiar form of a Docker Hub name: docker.io/library/busybox is busybox, docker.io/x/y is x/y. */
function familiar(name: string): string {
  const hub = /^(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/(.+)$/.exec(name);
  const rest = hub ? hub[1]! : name;
  return /^library\/[^/]+$/.test(rest) ? rest.slice('library/'.length) : rest;
}

/** "name:tag" (or "name@digest"): the key tags are filed under. */
export const refKey = (r: ImageRef) => (r.tag ? `${r.name}:${r.tag}` : `${r.name}@${r.digest}`);

/** The registry host a name lives on (Docker Hub's for a bare name), and the path there. */
export function registryOf(name: string): { host: string; path: string } {
  const parts = name.split('/');
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) return { host: first, path: parts.slice(1).join('/') };
  return { host: 'registry-1.docker.io', path: parts.length === 1 ? `library/${name}` : name };
}
