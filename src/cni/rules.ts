// Comment-tagged iptables rules for the CNI plugins: each plugin owns a chain
// hooked from built-in chains, and each attachment's rules carry a comment naming
// the network and the attachment, so DEL and GC find them from iptables-save
// alone. One iptables-restore per family and change.
import { createHash } from 'node:crypto';
import { parseIptablesSave } from '../firewall/iptables/parse.js';
import type { ExecRunner } from '../system/ports.js';
import { CniError } from './skel.js';
import { CNI_ERR } from './spec.js';

export const TOOLS = { 4: ['iptables-save', 'iptables-restore'], 6: ['ip6tables-save', 'ip6tables-restore'] } as const;

export const attachmentHash = (containerId: string, ifname: string) => createHash('sha256').update(`${containerId}\n${ifname}`).digest('hex');
/** The comment of an attachment's rules: plugin, network and attachment. */
export const ruleTag = (plugin: string, network: string, containerId: string, ifname: string) =>
  `${plugin}:${network}:${attachmentHash(containerId, ifname).slice(0, 16)}`;

export interface TaggedChange {
  chain: string;
  /** Jumps into the chain from built-in chains (added when missing). */
  hooks: Array<{ chain: string; rule: string }>;
  /** Rules of one family to add (text after "-A CHAIN "). */
  add: Record<4 | 6, string[]>;
  /** Which existing rules of the chain to delete first (by their text). */
  remove: (rule: string) => boolean;
}

/** Applies changes to chains of one table: one save and at most one restore per family. */
export async function applyTagged(exec: ExecRunner, table: 'nat' | 'filter', changes: TaggedChange[]): Promise<void> {
  for (const family of [4, 6] as const) {
    const adding = changes.some((c) => c.add[family].length > 0);
    const [save, restore] = TOOLS[family];
    const saved = await exec.run([save, '-t', table], { allowFail: true });
    if (saved.code !== 0) {
      if (!adding) continue; // nothing to add, nothing of ours can exist
      throw new CniError(CNI_ERR.IO_FAILURE, `${save}: ${saved.stderr.trim()}`);
    }
    const t = parseIptablesSave(saved.stdout).get(table);
    const lines = [`*${table}`];
    for (const c of changes) {
      if (c.add[family].length) {
        if (!t?.chains.has(c.chain)) lines.push(`:${c.chain} - [0:0]`);
        for (const h of c.hooks) if (!(t?.rules.get(h.chain) ?? []).includes(h.rule)) lines.push(`-A ${h.chain} ${h.rule}`);
      }
      for (const r of (t?.rules.get(c.chain) ?? []).filter(c.remove)) lines.push(`-D ${c.chain} ${r}`);
      for (const r of c.add[family]) lines.push(`-A ${c.chain} ${r}`);
    }
    if (lines.length === 1) continue;
    const res = await exec.run([restore, '-w', '--noflush'], { input: `${lines.join('\n')}\nCOMMIT\n`, allowFail: true });
    if (res.code !== 0) throw new CniError(CNI_ERR.IO_FAILURE, `${restore}: ${res.stderr.trim()}`);
  }
}

/** A remove predicate: this attachment's rules, or (GC) every rule of the network not kept. */
export function tagged(tag: string, gc?: { prefix: string; keep: Set<string> }): (rule: string) => boolean {
  if (!gc) return (r) => r.includes(`"${tag}"`);
  return (r) => {
    const m = /comment "([^"]+)"/.exec(r); // iptables (--comment) and nft (comment) alike
    return Boolean(m && m[1]!.startsWith(gc.prefix) && !gc.keep.has(m[1]!));
  };
}
