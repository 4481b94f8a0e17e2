// --user NAME|UID[:GROUP|GID] against the image's /etc/passwd and /etc/group.
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidConfigError } from '../errors.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups (the user's memberships in /etc/group). */
  groups: number[];
  home: string;
}

/** A file of the rootfs, read only when it resolves inside it (an image's symlink never reads the host). */
export function readInRoot(root: string, rel: string): string | undefined {
  try {
    const real = realpathSync(join(root, rel));
    const base = realpathSync(root);
    if (!real.startsWith(`${base}/`)) return undefined;
    return readFileSync(real, 'utf8');
  } catch {
    return undefined;
  }
}

const rows = (text: string | undefined) => (text ?? '').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));

export function resolveUser(spec: string, passwd: string | undefined, group: string | undefined): ResolvedUser {
  const [u, g] = spec === '' ? ['0', undefined] : (spec.split(':', 2) as [string, string | undefined]);
  const users = rows(passwd);
  const groups = rows(group);
  const num = (s: string) => /^\d+$/.test(s);
  let entry = users.find((r) => (num(u) ? r[2] === u : r[0] === u));
  if (!entry && !num(u)) throw new InvalidConfigError(`unable to find user ${u}: no matching entries in passwd file`);
  const uid = num(u) ? Number(u) : Number(entry![2]);
  let gid = entry ? Number(entry[3]) : 0;
  if (g !== undefined && g !== '') {
    if (num(g)) gid = Number(g);
    else {
      const ge = groups.find((r) => r[0] === g);
      if (!ge) throw new InvalidConfigError(`unable to find group ${g}: no matching entries in group file`);
      gid = Number(ge[2]);
    }
  }
  const name = entry?.[0];
  const supplementary = name ? groups.filter((r) => (r[3] ?? '').split(',').includes(name)).map((r) => Number(r[2])).filter((x) => x !== gid) : [];
  return { uid, gid, groups: [...new Set(supplementary)], home: entry?.[5] || '/' };
}
