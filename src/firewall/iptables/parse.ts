// A narrow parser of iptables-save output: tables, chains with policies, and
// rules as (chain, argument text). Enough to compare tsnet's own chains with
// what we want and to find our jump rules in the built-in chains.

export interface SavedTable {
  /** chain -> policy ('-' for user chains) */
  chains: Map<string, string>;
  /** rules per chain in order, as the text after "-A CHAIN ". */
  rules: Map<string, string[]>;
}

export type SavedRuleset = Map<string, SavedTable>;

export function parseIptablesSave(text: string): SavedRuleset {
  const out: SavedRuleset = new Map();
  let cur: SavedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      cur = { chains: new Map(), rules: new Map() };
      out.set(line.slice(1), cur);
      continue;
    }
    if (!cur) continue;
    if (line === 'COMMIT') {
      cur = undefined;
      continue;
    }
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (name) {
        cur.chains.set(name, policy ?? '-');
        if (!cur.rules.has(name)) cur.rules.set(name, []);
      }
      continue;
    }
    const m = /^-A\s+(\S+)\s*(.*)$/.exec(line);
    if (m) {
      const chain = m[1]!;
      if (!cur.rules.has(chain)) cur.rules.set(chain, []);
      cur.rules.get(chain)!.push(m[2]!);
    }
  }
  return out;
}
