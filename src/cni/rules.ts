// Comment-tagged iptables rules for the CNI plugins: each plugin owns a chain
// hooked from built-in chains, and each attachment's rules carry a comment naming
// the network and the attachment, so DEL and GC find them from iptables-save
// alone. One iptables-restore per family and change.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { parseIptablesSave } from '../firewall/iptables/parse.js';
import { CniError } from './skel.js';
import { CNI_ERR } from './spec.js';

export const TOOLS = { 4: ['iptables-save', 'iptables-restore'], 6: ['ip6tables-save', 'ip6tables-restore'] } as const;

export function run(argv: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(argv[0]!, argv.slice(1), { env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    c.stdin.on('error', () => undefined);
    c.stdin.end(input ?? '');
  });
}

export const attachmentHash = (containerId: string, ifname: string) => createHash('sha256').update(`${containerId}\n${ifname}`).digest('hex');
/** The comment of an attachment's rules: plugin, network and attachment. */
export const ruleTag = (plugin: string, network: string, containerId: string, ifname: string) =>
  `${plugin}:${network}:${attachmentHash(containerId, ifname).slice(0, 16)}`;

export interface TaggedChange {
  table: 'nat' | 'filter';
  chain: string;
  /** Jumps into the chain from built-in chains (added when missing). */
  hooks: Array<{ chain: string; rule: string }>;
  /** Rules of one family to add (text after "-A CHAIN "). */
  add: Record<4 | 6, string[]>;
  /** Which existing rules of the chain to delete first (by their text). */
  remove: (rule: string) => boolean;
}

export async function applyTagged(change: TaggedChange): Promise<void> {
  for (const family of [4, 6] as const) {
    const adding = change.add[family];
    const [save, restore] = TOOLS[family];
    const saved = await run([save, '-t', change.table]);
    if (saved.code !== 0) {
      if (!adding.length) continue; // nothing to add, nothing of ours can exist
      throw new CniError(CNI_ERR.IO_FAILURE, `${save}: ${saved.stderr.trim()}`);
    }
    const t = parseIptablesSave(saved.stdout).get(change.table);
    const lines = [`*${change.table}`];
    if (adding.length) {
      if (!t?.chains.has(change.chain)) lines.push(`:${change.chain} - [0:0]`);
      for (const h of change.hooks) if (!(t?.rules.get(h.chain) ?? []).includes(h.rule)) lines.push(`-A ${h.chain} ${h.rule}`);
    }
    for (const r of (t?.rules.get(change.chain) ?? []).filter(change.remove)) lines.push(`-D ${change.chain} ${r}`);
    for (const r of adding) lines.push(`-A ${change.chain} ${r}`);
    if (lines.length === 1) continue;
    const res = await run([restore, '-w', '--noflush'], `${lines.join('\n')}\nCOMMIT\n`);
    if (res.code !== 0) throw new CniError(CNI_ERR.IO_FAILURE, `${restore}: ${res.stderr.trim()}`);
  }
}

/** A remove predicate: this attachment's rules, or (GC) every rule of the network not kept. */
export function tagged(tag: string, gc?: { prefix: string; keep: Set<string> }): (rule: string) => boolean {
  if (!gc) return (r) => r.includes(`"${tag}"`);
  return (r) => {
    const m = /--comment "([^"]+)"/.exec(r);
    return Boolean(m && m[1]!.startsWith(gc.prefix) && !gc.keep.has(m[1]!));
  };
}
