// tsnet-portmap: a drop-in for the reference portmap plugin, chained after a main
// plugin. It reads the container's addresses from prevResult and the mappings
// from runtimeConfig.portMappings, and installs DNAT rules (PREROUTING and OUTPUT
// for local addresses) plus, with snat (the default), masquerade for hairpin and
// 127.0.0.1 access. Rules carry the network and attachment, so DEL and GC need
// nothing but iptables-save (or `nft -a list table`).
//
// backend "iptables" (the default while iptables is installed) or "nftables": the
// same rules in an `inet tsnet_cni` table (base chains prerouting, output and
// postrouting), each carrying the attachment's comment; DEL finds them by comment
// and deletes them by handle, in one `nft -f -` transaction.
//
// 127.0.0.1 access needs route_localnet on the interface that leads to the
// container, which on its own would let that side reach the host's loopback-only
// services (CVE-2020-8558). So: the interface is the one the kernel routes the
// container's address through (never a name from prevResult); a guard that drops
// 127.0.0.0/8 arriving on any interface but lo goes in before route_localnet is
// turned on; and the last DEL that needed it puts both back as they were.
import { join } from 'node:path';
import { formatIp, parseCidr, parseIp } from '../ipam/addr.js';
import { CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, parsePrevResult, validAttachments, type CniResult } from './spec.js';
import { applyTagged, cniRunDir, installed, networkTagPrefix, ruleTag, tagged, withFirewallLock, type CniHost } from './rules.js';
import { parseIptablesSave } from '../firewall/iptables/parse.js';
import { CNI_PORTMAP } from '../firewall/ownership.js';
import { ifaceText } from '../firewall/text.js';
import { CommandError } from '../errors.js';

const KEYS = ['snat', 'backend', 'markMasqBit', 'externalSetMarkChain', 'conditionsV4', 'conditionsV6'];
const [DNAT_CHAIN, SNAT_CHAIN, GUARD_CHAIN] = CNI_PORTMAP.chains;
const GUARD_RULE = '-d 127.0.0.0/8 ! -i lo -j DROP';
const GUARD_TAG = 'tsnet-pm:localnet-guard';

interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP: string;
}

type Backend = 'iptables' | 'nftables';

function backendOf(h: CniHost, a: CniArgs): Backend {
  const b = (a.conf as Record<string, unknown>).backend;
  // Unset: iptables (the reference's default) unless only nft is installed.
  if (b === undefined) return !installed(h, a.env, 'iptables-restore') && installed(h, a.env, 'nft') ? 'nftables' : 'iptables';
  if (b !== 'iptables' && b !== 'nftables') throw new CniError(CNI_ERR.INVALID_CONFIG, `backend must be "iptables" or "nftables" (got ${JSON.stringify(b)})`);
  return b;
}

function parseMappings(a: CniArgs): Mapping[] {
  // Ignoring conditions would publish ports more widely than asked: refuse them instead.
  for (const k of ['conditionsV4', 'conditionsV6']) {
    const v = (a.conf as Record<string, unknown>)[k];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `"${k}" is not supported by tsnet-portmap yet`);
  }
  const rc = a.conf.runtimeConfig;
  if (rc !== undefined && (typeof rc !== 'object' || rc === null || Array.isArray(rc))) throw new CniError(CNI_ERR.INVALID_CONFIG, 'runtimeConfig must be an object');
  const raw = (rc?.portMappings ?? []) as unknown;
  if (!Array.isArray(raw)) throw new CniError(CNI_ERR.INVALID_CONFIG, 'runtimeConfig.portMappings must be a list');
  return raw.map((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}] must be an object (got ${JSON.stringify(m)})`);
    const e = m as Record<string, unknown>;
    const port = (k: string) => {
      const v = e[k];
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].${k} must be a port number (got ${JSON.stringify(v)})`);
      return v as number;
    };
    if (e.protocol !== undefined && typeof e.protocol !== 'string') throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].protocol must be a string`);
    const protocol = String(e.protocol ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].protocol "${protocol}" is not tcp, udp or sctp`);
    let hostIP = '';
    if (e.hostIP !== undefined && e.hostIP !== '' && e.hostIP !== '0.0.0.0' && e.hostIP !== '::') {
      try {
        hostIP = formatIp(parseIp(String(e.hostIP)));
      } catch (err) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].hostIP: ${(err as Error).message}`);
      }
    }
    return { hostPort: port('hostPort'), containerPort: port('containerPort'), protocol: protocol as Mapping['protocol'], hostIP };
  });
}

function containerIps(a: CniArgs): Array<{ family: 4 | 6; ip: string }> {
  if (a.conf.prevResult === undefined) throw new CniError(CNI_ERR.INVALID_CONFIG, 'tsnet-portmap must be chained after a plugin that returns a result (no prevResult)');
  const prev = parsePrevResult(a.conf.prevResult);
  const sandboxIfaces = new Set((prev.interfaces ?? []).map((x, i) => (x.sandbox ? i : -1)).filter((i) => i >= 0));
  return (prev.ips ?? [])
    .filter((ip) => ip.interface === undefined || sandboxIfaces.has(ip.interface) || !sandboxIfaces.size)
    .map((ip) => {
      let c;
      try {
        c = parseCidr(ip.address, { what: 'prevResult address' });
      } catch (err) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, (err as Error).message);
      }
      return { family: c.family, ip: formatIp({ family: c.family, value: c.address }) };
    });
}

/** iptables rules. The 127.0.0.0/8 masquerade names the interface, so DEL sees which interfaces still need route_localnet. */
function rulesFor(tag: string, maps: Mapping[], ips: Array<{ family: 4 | 6; ip: string }>, snat: boolean, localnetIf: string | undefined) {
  const dnat: Record<4 | 6, string[]> = { 4: [], 6: [] };
  const masq: Record<4 | 6, string[]> = { 4: [], 6: [] };
  for (const m of maps) {
    for (const { family, ip } of ips) {
      if (m.hostIP && m.hostIP.includes(':') !== (family === 6)) continue;
      const dst = m.hostIP ? `-d ${m.hostIP}/${family === 4 ? 32 : 128} ` : '';
      const to = family === 6 ? `[${ip}]:${m.containerPort}` : `${ip}:${m.containerPort}`;
      dnat[family].push(`${dst}-p ${m.protocol} -m ${m.protocol} --dport ${m.hostPort} -m comment --comment "${tag}" -j DNAT --to-destination ${to}`);
      if (snat) {
        const host = `${ip}/${family === 4 ? 32 : 128}`;
        masq[family].push(`-s ${host} -d ${host} -p ${m.protocol} -m ${m.protocol} --dport ${m.containerPort} -m comment --comment "${tag}" -j MASQUERADE`);
        if (family === 4 && localnetIf) {
          masq[4].push(`-s 127.0.0.0/8 -d ${host} -o ${localnetIf} -p ${m.protocol} -m ${m.protocol} --dport ${m.containerPort} -m comment --comment "${tag}" -j MASQUERADE`);
        }
      }
    }
  }
  return { dnat, masq };
}

/** The same rules in nft syntax, by base chain of the `inet tsnet_cni` table. */
function nftRulesFor(tag: string, maps: Mapping[], ips: Array<{ family: 4 | 6; ip: string }>, snat: boolean, localnetIf: string | undefined): { dnat: string[]; masq: string[] } {
  const dnat: string[] = [];
  const masq: string[] = [];
  for (const m of maps) {
    for (const { family, ip } of ips) {
      if (m.hostIP && m.hostIP.includes(':') !== (family === 6)) continue;
      const fam = family === 4 ? 'ip' : 'ip6';
      const dst = m.hostIP ? `${fam} daddr ${m.hostIP}` : `meta nfproto ${family === 4 ? 'ipv4' : 'ipv6'}`;
      const to = family === 6 ? `[${ip}]:${m.containerPort}` : `${ip}:${m.containerPort}`;
      dnat.push(`${dst} fib daddr type local ${m.protocol} dport ${m.hostPort} dnat ${fam} to ${to} comment "${tag}"`);
      if (snat) {
        masq.push(`${fam} saddr ${ip} ${fam} daddr ${ip} ${m.protocol} dport ${m.containerPort} masquerade comment "${tag}"`);
        if (family === 4 && localnetIf) masq.push(`ip saddr 127.0.0.0/8 ip daddr ${ip} oifname "${localnetIf}" ${m.protocol} dport ${m.containerPort} masquerade comment "${tag}"`);
      }
    }
  }
  return { dnat, masq };
}

const NFT_TABLE = CNI_PORTMAP.nftTables[0];
const NFT_SKELETON = [
  `add table ${NFT_TABLE}`,
  `add chain ${NFT_TABLE} prerouting { type nat hook prerouting priority dstnat; }`,
  `add chain ${NFT_TABLE} output { type nat hook output priority -100; }`,
  `add chain ${NFT_TABLE} postrouting { type nat hook postrouting priority srcnat; }`,
  `add chain ${NFT_TABLE} localnet { type filter hook prerouting priority raw; }`,
];
const NFT_GUARD = `ip daddr 127.0.0.0/8 iifname != "lo" drop comment "${GUARD_TAG}"`;

interface NftRule {
  chain: string;
  rule: string;
  handle: number;
}

/** Our table's rules: chain, text (as nft prints it) and handle. undefined when the table does not exist. */
async function nftRules(h: CniHost): Promise<NftRule[] | undefined> {
  const r = await h.sys.exec.run(['nft', '-a', 'list', 'table', ...NFT_TABLE.split(' ')], { allowFail: true });
  if (r.code !== 0) return undefined;
  const out: NftRule[] = [];
  let chain = '';
  for (const line of r.stdout.split('\n')) {
    const c = /^\s*chain (\S+) \{/.exec(line);
    if (c) chain = c[1]!;
    const m = /^\s*(.*\bcomment "[^"]*") # handle (\d+)$/.exec(line);
    if (m && chain) out.push({ chain, rule: m[1]!, handle: Number(m[2]) });
  }
  return out;
}

/**
 * One nft transaction: delete our rules that match, add new ones (DNAT from
 * prerouting and output), keep the localnet guard while any masquerade rule is
 * left, and delete the table when nothing is left. Returns the rules remaining.
 */
async function applyNft(h: CniHost, dnat: string[], masq: string[], remove: (r: string) => boolean, before?: (left: string[]) => void): Promise<string[]> {
  const existing = (await nftRules(h)) ?? [];
  const ours = existing.filter((x) => x.rule !== NFT_GUARD);
  const gone = ours.filter((x) => remove(x.rule));
  const kept = ours.filter((x) => !remove(x.rule));
  const left = [...kept.map((x) => x.rule), ...dnat, ...masq];
  const keptMasq = kept.some((x) => x.chain === 'postrouting') || masq.length > 0;
  const guard = existing.find((x) => x.rule === NFT_GUARD);
  const lines: string[] = [];
  if (!left.length) {
    if (existing.length) lines.push(`delete table ${NFT_TABLE}`);
  } else {
    lines.push(...NFT_SKELETON);
    if (keptMasq && !guard) lines.push(`add rule ${NFT_TABLE} localnet ${NFT_GUARD}`);
    for (const x of gone) lines.push(`delete rule ${NFT_TABLE} ${x.chain} handle ${x.handle}`);
    if (!keptMasq && guard) lines.push(`delete rule ${NFT_TABLE} localnet handle ${guard.handle}`);
    for (const r of dnat) lines.push(`add rule ${NFT_TABLE} prerouting ${r}`, `add rule ${NFT_TABLE} output ${r}`);
    for (const r of masq) lines.push(`add rule ${NFT_TABLE} postrouting ${r}`);
  }
  before?.(left);
  if (!lines.length) return left;
  const res = await h.sys.exec.run(['nft', '-f', '-'], { input: `${lines.join('\n')}\n`, allowFail: true });
  if (res.code !== 0) throw new CommandError(['nft', '-f', '-'], res.code, res.stderr);
  return left;
}

/**
 * The iptables rules of a change, in one save + restore per family: the raw-table
 * localnet guard (kept while any 127.0.0.0/8 masquerade rule is left), DNAT and
 * masquerade. `before` sees the masquerade rules that will remain before anything
 * is written; the remaining ones are returned.
 */
async function applyIpt(h: CniHost, dnat: Record<4 | 6, string[]>, masq: Record<4 | 6, string[]>, remove: (r: string) => boolean, before?: (left: string[]) => void): Promise<string[]> {
  const snatKey = `nat/${SNAT_CHAIN}`;
  const remaining = await applyTagged(
    h.sys.exec,
    [
      {
        table: 'nat',
        chain: DNAT_CHAIN,
        hooks: [
          { chain: 'PREROUTING', rule: `-m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}` },
          { chain: 'OUTPUT', rule: `-m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}` },
        ],
        add: dnat,
        remove,
        dropWhenEmpty: true,
      },
      { table: 'nat', chain: SNAT_CHAIN, hooks: [{ chain: 'POSTROUTING', rule: `-j ${SNAT_CHAIN}` }], add: masq, remove, dropWhenEmpty: true },
      // After the masquerade chain it depends on (onlyWhile reads what that one keeps).
      { table: 'raw', chain: GUARD_CHAIN, hooks: [{ chain: 'PREROUTING', rule: `-j ${GUARD_CHAIN}` }], add: { 4: [GUARD_RULE], 6: [] }, remove: () => false, unique: true, onlyWhile: snatKey },
    ],
    (r) => before?.(r.get(snatKey) ?? []),
  );
  return remaining.get(snatKey) ?? [];
}

async function savedRules(h: CniHost, table: string, chain: string, family: 4 | 6): Promise<string[]> {
  const r = await h.sys.exec.run([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table], { allowFail: true });
  return r.code === 0 ? parseIptablesSave(r.stdout).get(table)?.rules.get(chain) ?? [] : [];
}

/** The host interface the kernel routes an address through (as the reference plugin finds it). */
async function routedInterface(h: CniHost, ip: string): Promise<string | undefined> {
  const nl = h.sys.netlink();
  try {
    const route = await nl.routeGet(4, ip);
    if (!route?.oif) return undefined;
    const link = await nl.getLinkByIndex(route.oif);
    return link ? ifaceText(link.name) : undefined;
  } finally {
    nl.close();
  }
}

/**
 * route_localnet bookkeeping: a marker file per interface whose route_localnet
 * tsnet-portmap turned on, so the last DEL that needed it turns it off again (and
 * one that was on before is left alone).
 */
const markerDir = (h: CniHost) => join(cniRunDir(h.runDir), 'localnet');
const localnetKey = (ifname: string) => `net/ipv4/conf/${ifname}/route_localnet`;

function enableLocalnet(h: CniHost, ifname: string): void {
  if (h.sys.sysctl.get(localnetKey(ifname)) !== '0') return; // on already (not ours to undo), or no such interface
  h.sys.files.mkdir(markerDir(h), 0o700);
  h.sys.files.write(join(markerDir(h), ifname), '');
  h.sys.sysctl.set(localnetKey(ifname), '1');
}

/** Turns route_localnet off where we turned it on and no remaining rule leads 127/8 there. */
function releaseLocalnet(h: CniHost, remaining: string[]): void {
  for (const ifname of h.sys.files.list(markerDir(h))) {
    const used = remaining.some((r) => r.includes(`-o ${ifname} `) || r.includes(`oifname "${ifname}"`));
    if (used) continue;
    if (h.sys.sysctl.get(localnetKey(ifname)) === '1') h.sys.sysctl.set(localnetKey(ifname), '0');
    h.sys.files.remove(join(markerDir(h), ifname));
  }
}

export function portmapPlugin(h: CniHost): CniPlugin {
  const tagOf = (a: CniArgs) => ruleTag('tsnet-pm', a.conf.name, a.containerId, a.ifname);
  /** Removes matching rules of the configured backend, then what no rule needs any more. */
  const removeMatching = (a: CniArgs, remove: (r: string) => boolean) =>
    withFirewallLock(h, async () => {
      // route_localnet goes off before the rules (and the guard) that covered it.
      const release = (left: string[]) => releaseLocalnet(h, left);
      if (backendOf(h, a) === 'nftables') await applyNft(h, [], [], remove, release);
      else await applyIpt(h, { 4: [], 6: [] }, { 4: [], 6: [] }, remove, release);
    });
  return {
    keys: KEYS,
    async add(a: CniArgs): Promise<CniResult> {
      const maps = parseMappings(a);
      const ips = containerIps(a);
      const prev = parsePrevResult(a.conf.prevResult);
      if (!maps.length) return { ...prev, cniVersion: a.conf.cniVersion };
      const snat = (a.conf as { snat?: unknown }).snat !== false;
      const tag = tagOf(a);
      const backend = backendOf(h, a);
      const v4 = ips.find((x) => x.family === 4)?.ip;
      // 127.0.0.1 reaches the container through the interface its address is routed by.
      const localnetIf = snat && v4 ? await routedInterface(h, v4) : undefined;
      try {
        await withFirewallLock(h, async () => {
          if (backend === 'nftables') {
            const r = nftRulesFor(tag, maps, ips, snat, localnetIf);
            await applyNft(h, r.dnat, r.masq, tagged(tag));
          } else {
            const r = rulesFor(tag, maps, ips, snat, localnetIf);
            await applyIpt(h, r.dnat, r.masq, tagged(tag));
          }
          // Only now, with the guard in place, may 127/8 cross into that interface.
          if (localnetIf) enableLocalnet(h, localnetIf);
        });
      } catch (err) {
        try {
          await removeMatching(a, tagged(tag));
        } catch (undoErr) {
          h.log.error({ err: undoErr }, 'tsnet-portmap: rollback could not remove the rules of the failed ADD');
        }
        throw err;
      }
      return { ...prev, cniVersion: a.conf.cniVersion };
    },
    async del(a: CniArgs): Promise<void> {
      await removeMatching(a, tagged(tagOf(a)));
    },
    async check(a: CniArgs): Promise<void> {
      const maps = parseMappings(a);
      if (!maps.length) return;
      const ips = containerIps(a);
      if (backendOf(h, a) === 'nftables') {
        const have = ((await nftRules(h)) ?? []).filter((x) => x.chain === 'prerouting').map((x) => x.rule);
        for (const r of nftRulesFor(tagOf(a), maps, ips, false, undefined).dnat) if (!have.includes(r)) throw new CniError(CNI_ERR.CHECK_FAILED, `port mapping rule missing: ${r}`);
        return;
      }
      const { dnat } = rulesFor(tagOf(a), maps, ips, false, undefined);
      for (const family of [4, 6] as const) {
        if (!dnat[family].length) continue;
        const have = await savedRules(h, 'nat', DNAT_CHAIN, family);
        for (const r of dnat[family]) if (!have.includes(r)) throw new CniError(CNI_ERR.CHECK_FAILED, `port mapping rule missing: ${r}`);
      }
    },
    async gc(a: CniArgs): Promise<void> {
      const keep = new Set(validAttachments(a.conf).map((x) => ruleTag('tsnet-pm', a.conf.name, x.containerID, x.ifname)));
      await removeMatching(a, tagged('', { prefix: networkTagPrefix('tsnet-pm', a.conf.name), keep }));
    },
    async status(a: CniArgs): Promise<void> {
      const backend = backendOf(h, a);
      const tool = backend === 'nftables' ? 'nft' : 'iptables-restore';
      if (!installed(h, a.env, tool)) throw new CniError(CNI_ERR.NOT_AVAILABLE, `backend ${backend} needs ${tool}, which is not on PATH`);
    },
  };
}
