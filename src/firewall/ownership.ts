// Who owns which kernel names. The CLI's controller and the CNI plugins run on
// the same hosts and each reconciles or tears down "its own" objects, so every
// owner's names are listed here, once, and no two owners share a name or a prefix
// (a unit test checks). Code that decides "is this mine?" asks this table.

export interface Owner {
  readonly name: string;
  /** iptables chains: exact names, and prefixes of generated names. */
  readonly chains: readonly string[];
  readonly chainPrefixes: readonly string[];
  /** nftables tables ("family name"). */
  readonly nftTables: readonly string[];
  /** Prefixes of the rule comments it writes. */
  readonly comments: readonly string[];
  /** Prefixes of the link names and link aliases it creates. */
  readonly links: readonly string[];
  readonly aliases: readonly string[];
}

/** The network controller (tsnet CLI, later the engine): iptables and nftables backends. */
export const CONTROLLER = {
  name: 'controller',
  chains: [
    'TSNET-USER',
    'TSNET-FORWARD',
    'TSNET-ISOLATION-1',
    'TSNET-ISOLATION-2',
    'TSNET-POSTROUTING',
    'TSNET-DNAT',
    'TSNET-RAW',
    'TSNET-PROXY-INPUT',
  ],
  chainPrefixes: ['TSNET-N-'],
  nftTables: ['inet tsnet'],
  comments: ['tsnet:'],
  // Bridges named by the user (-o com.docker.network.bridge.name) carry the alias only.
  links: ['tsv', 'tsn-', 'tsnet0'],
  aliases: ['tsnet:'],
} as const satisfies Owner;

/** The tsnet-bridge CNI plugin. */
export const CNI_BRIDGE = {
  name: 'cni-bridge',
  chains: ['TSNET-CNI-MASQ'],
  chainPrefixes: [],
  nftTables: [],
  comments: ['tsnet-cni:'],
  links: ['tsc', 'tsg'],
  aliases: ['tsnet-cni:'],
} as const satisfies Owner;

/** The tsnet-portmap CNI plugin (both of its backends). */
export const CNI_PORTMAP = {
  name: 'cni-portmap',
  chains: ['TSNET-CNI-HOSTPORT', 'TSNET-CNI-HOSTPORT-SNAT', 'TSNET-CNI-LOCALNET'],
  chainPrefixes: [],
  nftTables: ['inet tsnet_cni'],
  comments: ['tsnet-pm:'],
  links: [],
  aliases: [],
} as const satisfies Owner;

export const OWNERS: readonly Owner[] = [CONTROLLER, CNI_BRIDGE, CNI_PORTMAP];

/** Whether an iptables chain belongs to this owner. */
export function ownsChain(owner: Owner, chain: string): boolean {
  return owner.chains.includes(chain) || owner.chainPrefixes.some((p) => chain.startsWith(p));
}

/** Whether a rule (iptables-save text after "-A CHAIN") jumps to a chain of this owner. */
export function jumpsToOwned(owner: Owner, rule: string): boolean {
  const m = /(?:^|\s)-j (\S+)$/.exec(rule);
  return Boolean(m && ownsChain(owner, m[1]!));
}
