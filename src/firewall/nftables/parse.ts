// A narrow parser of `nft list table inet tsnet`: the elements of each set and
// map, and the rule lines of each chain (what reconcile compares).

export interface ListedTable {
  elements: Map<string, Set<string>>;
  chains: Map<string, string[]>;
}

export function parseNftTable(text: string): ListedTable {
  const elements = new Map<string, Set<string>>();
  const chains = new Map<string, string[]>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const block = /^(set|map|chain) (\S+) \{$/.exec(line);
    if (!block) continue;
    const [, kind, name] = block;
    const body: string[] = [];
    let depth = 1;
    for (i++; i < lines.length && depth > 0; i++) {
      const l = lines[i]!.trim();
      if (l === '}') {
        depth--;
        if (depth === 0) break;
      }
      body.push(l);
    }
    if (kind === 'chain') {
      chains.set(name!, body.filter((l) => l && !/^type \S+ hook /.test(l)));
      continue;
    }
    const els = new Set<string>();
    const joined = body.join(' ');
    const m = /elements = \{(.*)\}/.exec(joined);
    if (m) for (const e of m[1]!.split(',')) if (e.trim()) els.add(e.trim().replace(/\s+/g, ' '));
    elements.set(name!, els);
  }
  return { elements, chains };
}
