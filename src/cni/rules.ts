// Comment-tagged iptables rules for the CNI plugins: each plugin owns chains
// (firewall/ownership.ts) hooked from built-in chains, and each attachment's rules
// carry a comment naming the network and the attachment, so DEL and GC find them
// from iptables-save alone. One iptables-restore per family and change.
//
// Every read-modify-write of these chains runs under one host-wide lock (the CNI
// run directory): iptables-restore --noflush empties a chain it is told to declare,
// so two first ADDs that both saw "no chain yet" would wipe each other's rules.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { parseIptablesSave } from '../firewall/iptables/parse.js';
import { commentText } from '../firewall/text.js';
import { DEFAULT_PATH, type ExecRunner, type Kernel } from '../system/kernel.js';
import type { Logger } from '../log.js';
import { CommandError } from '../errors.js';

export const TOOLS = { 4: ['iptables-save', 'iptables-restore'], 6: ['ip6tables-save', 'ip6tables-restore'] } as const;

/** What a CNI plugin works with: the kernel, its run directory (locks, sockets, marks) and a logger. */
export interface CniHost {
  sys: Kernel;
  /** tsnet's run directory (TSNET_RUN, default /run/tsnet); the plugins use its cni/ subdirectory. */
  runDir: string;
  log: Logger;
}

export const DEFAULT_RUN_DIR = '/run/tsnet';
export const cniRunDir = (runDir: string) => join(runDir, 'cni');

/** Runs fn holding the host-wide lock of the CNI plugins' firewall rules and sysctls. */
export async function withFirewallLock<T>(h: CniHost, fn: () => Promise<T>): Promise<T> {
  const dir = cniRunDir(h.runDir);
  h.sys.files.mkdir(dir, 0o700);
  return h.sys.locks.withLock(dir, fn);
}

/** Whether the caller's PATH (CNI's environment, else the default one) has a program. */
export const installed = (h: CniHost, env: NodeJS.ProcessEnv, cmd: string) => h.sys.exec.which(cmd, env.PATH ?? DEFAULT_PATH) !== undefined;

export const attachmentHash = (containerId: string, ifname: string) => createHash('sha256').update(`${containerId}\n${ifname}`).digest('hex');

/**
 * The network as it appears in comments and aliases: its name when short, else
 * '@' and a hash ('@' cannot start a network name), so a tag never outgrows the
 * 255 bytes of an iptables comment or an interface alias.
 */
export const networkToken = (network: string) => (Buffer.byteLength(network) <= 64 ? network : `@${createHash('sha256').update(network).digest('hex').slice(0, 16)}`);

/** The comment of an attachment's rules: plugin, network and attachment. */
export const ruleTag = (plugin: string, network: string, containerId: string, ifname: string) =>
  commentText(`${plugin}:${networkToken(network)}:${attachmentHash(containerId, ifname).slice(0, 16)}`);

/** The prefix every tag of one network starts with (GC). */
export const networkTagPrefix = (plugin: string, network: string) => `${plugin}:${networkToken(network)}:`;

export type Table = 'nat' | 'filter' | 'raw';

export interface TaggedChange {
  table: Table;
  chain: string;
  /** Jumps into the chain from built-in chains (added when missing). */
  hooks: Array<{ chain: string; rule: string }>;
  /** Rules of one family to add (text after "-A CHAIN "). */
  add: Record<4 | 6, string[]>;
  /** Which existing rules of the chain to delete first (by their text). */
  remove: (rule: string) => boolean;
  /** Add a rule only when the chain does not hold it already. */
  unique?: boolean;
  /** With no rule left in it afterwards, the chain and its hooks go too. */
  dropWhenEmpty?: boolean;
  /** This chain's rules exist only while that chain (an earlier change's) has rules afterwards. */
  onlyWhile?: string;
}

/** Rules per chain after a change, keyed "table/chain", both families. */
export type Remaining = Map<string, string[]>;
const key = (table: string, chain: string) => `${table}/${chain}`;

/**
 * Plans one family's iptables-restore input from what iptables-save printed (pure).
 * Chains are declared only when the save lacks them, which is right only because
 * the caller holds withFirewallLock (no other writer between save and restore).
 */
export function planTagged(savedText: string, changes: TaggedChange[], family: 4 | 6): { input?: string; remaining: Remaining } {
  const saved = parseIptablesSave(savedText);
  const remaining: Remaining = new Map();
  const blocks = new Map<Table, string[]>();
  const drops = new Map<Table, string[]>();
  for (const c of changes) {
    const t = saved.get(c.table);
    const lines = blocks.get(c.table) ?? [];
    blocks.set(c.table, lines);
    const exists = Boolean(t?.chains.has(c.chain));
    const have = t?.rules.get(c.chain) ?? [];
    let add = c.add[family].filter((r, i, all) => all.indexOf(r) === i && !(c.unique && have.includes(r)));
    let removed = have.filter(c.remove);
    if (c.onlyWhile !== undefined && !(remaining.get(c.onlyWhile)?.length)) {
      add = [];
      removed = have;
    }
    const left = [...have.filter((r) => !removed.includes(r)), ...add];
    remaining.set(key(c.table, c.chain), left);
    if (add.length) {
      if (!exists) lines.push(`:${c.chain} - [0:0]`);
      for (const h of c.hooks) if (!(t?.rules.get(h.chain) ?? []).includes(h.rule)) lines.push(`-A ${h.chain} ${h.rule}`);
    }
    for (const r of removed) lines.push(`-D ${c.chain} ${r}`);
    for (const r of add) lines.push(`-A ${c.chain} ${r}`);
    if ((c.dropWhenEmpty || c.onlyWhile !== undefined) && exists && !left.length) {
      for (const h of c.hooks) if ((t?.rules.get(h.chain) ?? []).includes(h.rule)) lines.push(`-D ${h.chain} ${h.rule}`);
      drops.set(c.table, [...(drops.get(c.table) ?? []), `-X ${c.chain}`]);
    }
  }
  const text = [...blocks]
    .map(([table, lines]) => [...lines, ...(drops.get(table) ?? [])].length ? [`*${table}`, ...lines, ...(drops.get(table) ?? []), 'COMMIT'].join('\n') : '')
    .filter(Boolean)
    .join('\n');
  return { input: text ? `${text}\n` : undefined, remaining };
}

/**
 * Applies changes to the CNI chains: one iptables-save and at most one
 * iptables-restore per family (the two families in parallel). `before` runs after
 * planning and before anything is written, with the rules that will remain.
 * Returns those rules. The caller holds withFirewallLock.
 */
export async function applyTagged(exec: ExecRunner, changes: TaggedChange[], before?: (remaining: Remaining) => void): Promise<Remaining> {
  const plans = await Promise.all(
    ([4, 6] as const).map(async (family) => {
      const [save, restore] = TOOLS[family];
      const adding = changes.some((c) => c.add[family].length > 0);
      const saved = await exec.run([save], { allowFail: true });
      if (saved.code !== 0) {
        if (!adding) return { restore, plan: { remaining: new Map() as Remaining } }; // no tool: nothing of ours can exist
        throw new CommandError([save], saved.code, saved.stderr);
      }
      return { restore, plan: planTagged(saved.stdout, changes, family) };
    }),
  );
  const remaining: Remaining = new Map();
  for (const { plan } of plans) for (const [k, v] of plan.remaining) remaining.set(k, [...(remaining.get(k) ?? []), ...v]);
  before?.(remaining);
  await Promise.all(
    plans.map(async ({ restore, plan }) => {
      if (!plan.input) return;
      const res = await exec.run([restore, '-w', '--noflush'], { input: plan.input, allowFail: true });
      if (res.code !== 0) throw new CommandError([restore, '-w', '--noflush'], res.code, res.stderr);
    }),
  );
  return remaining;
}

/** A remove predicate: this attachment's rules, or (GC) every rule of the network not kept. */
export function tagged(tag: string, gc?: { prefix: string; keep: Set<string> }): (rule: string) => boolean {
  if (!gc) return (r) => r.includes(`"${tag}"`);
  return (r) => {
    const m = /comment "([^"]+)"/.exec(r); // iptables (--comment) and nft (comment) alike
    return Boolean(m && m[1]!.startsWith(gc.prefix) && !gc.keep.has(m[1]!));
  };
}
