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
import type { SystemPorts } from '../system/ports.js';
import { formatIp, parseCidr, parseIp } from '../ipam/addr.js';
import { CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, type CniResult } from './spec.js';
import { applyTagged, ruleTag, tagged } from './rules.js';
import { parseIptablesSave } from '../firewall/iptables/parse.js';
import { onPath } from '../system/real/exec.js';

const KEYS = ['snat', 'backend', 'markMasqBit', 'externalSetMarkChain', 'conditionsV4', 'conditionsV6'];
const DNAT_CHAIN = 'TSNET-CNI-HOSTPORT';
const SNAT_CHAIN = 'TSNET-CNI-HOSTPORT-SNAT';

interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP: string;
}

type Backend = 'iptables' | 'nftables';

function backendOf(sys: SystemPorts, a: CniArgs): Backend {
  const b = (a.conf as Record<string, unknown>).backend;
  // Unset: iptables (the reference's default) unless only nft is installed.
  if (b === undefined) return !onPath('iptables-restore', a.env) && onPath('nft', a.env) ? 'nftables' : 'iptables';
  if (b !== 'iptables' && b !== 'nftables') throw new CniError(CNI_ERR.INVALID_CONFIG, `backend must be "iptables" or "nftables" (got ${JSON.stringify(b)})`);
  return b;
}

function parseMappings(a: CniArgs): Mapping[] {
  // Ignoring conditions would publish ports more widely than asked: refuse them instead.
  for (const k of ['conditionsV4', 'conditionsV6']) {
    const v = (a.conf as Record<string, unknown>)[k];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `"${k}" is not supported by tsnet-portmap yet`);
  }
  const raw = (a.conf.runtimeConfig?.portMappings ?? []) as unknown;
  if (!Array.isArray(raw)) throw new CniError(CNI_ERR.INVALID_CONFIG, 'runtimeConfig.portMappings must be a list');
  return raw.map((m: Record<string, unknown>, i) => {
    const port = (k: string) => {
      const v = m[k];
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].${k} must be a port number (got ${JSON.stringify(v)})`);
      return v as number;
    };
    const protocol = String(m.protocol ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].protocol "${protocol}" is not tcp, udp or sctp`);
    let hostIP = '';
    if (m.hostIP !== undefined && m.hostIP !== '' && m.hostIP !== '0.0.0.0' && m.hostIP !== '::') {
      try {
        hostIP = formatIp(parseIp(String(m.hostIP)));
      } catch (err) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, `portMappings[${i}].hostIP: ${(err as Error).message}`);
      }
    }
    return { hostPort: port('hostPort'), containerPort: port('containerPort'), protocol: protocol as Mapping['protocol'], hostIP };
  });
}

function containerIps(a: CniArgs): Array<{ family: 4 | 6; ip: string }> {
  const prev = a.conf.prevResult;
  if (!prev) throw new CniError(CNI_ERR.INVALID_CONFIG, 'tsnet-portmap must be chained after a plugin that returns a result (no prevResult)');
  const sandboxIfaces = new Set((prev.interfaces ?? []).map((x, i) => (x.sandbox ? i : -1)).filter((i) => i >= 0));
  return (prev.ips ?? [])
    .filter((ip) => ip.interface === undefined || sandboxIfaces.has(ip.interface) || !sandboxIfaces.size)
    .map((ip) => {
      const c = parseCidr(ip.address);
      return { family: c.family, ip: formatIp({ family: c.family, value: c.address }) };
    });
}

function rulesFor(tag: string, maps: Mapping[], ips: Array<{ family: 4 | 6; ip: string }>, snat: boolean) {
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
        if (family === 4) masq[4].push(`-s 127.0.0.0/8 -d ${host} -p ${m.protocol} -m ${m.protocol} --dport ${m.containerPort} -m comment --comment "${tag}" -j MASQUERADE`);
      }
    }
  }
  return { dnat, masq };
}

/** The same rules in nft syntax, by base chain of the `inet tsnet_cni` table. */
function nftRulesFor(tag: string, maps: Mapping[], ips: Array<{ family: 4 | 6; ip: string }>, snat: boolean): { dnat: string[]; masq: string[] } {
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
        if (family === 4) masq.push(`ip saddr 127.0.0.0/8 ip daddr ${ip} ${m.protocol} dport ${m.containerPort} masquerade comment "${tag}"`);
      }
    }
  }
  return { dnat, masq };
}

const NFT_TABLE = 'inet tsnet_cni';
const NFT_SKELETON = [
  `add table ${NFT_TABLE}`,
  `add chain ${NFT_TABLE} prerouting { type nat hook prerouting priority dstnat; }`,
  `add chain ${NFT_TABLE} output { type nat hook output priority -100; }`,
  `add chain ${NFT_TABLE} postrouting { type nat hook postrouting priority srcnat; }`,
];

/** Our table's rules: chain, text (as nft prints it) and handle. Empty when the table does not exist. */
async function nftRules(sys: SystemPorts): Promise<Array<{ chain: string; rule: string; handle: number }>> {
  const r = await sys.exec.run(['nft', '-a', 'list', 'table', ...NFT_TABLE.split(' ')], { allowFail: true });
  if (r.code !== 0) return [];
  const out: Array<{ chain: string; rule: string; handle: number }> = [];
  let chain = '';
  for (const line of r.stdout.split('\n')) {
    const c = /^\s*chain (\S+) \{/.exec(line);
    if (c) chain = c[1]!;
    const m = /^\s*(.*\bcomment "[^"]*") # handle (\d+)$/.exec(line);
    if (m && chain) out.push({ chain, rule: m[1]!, handle: Number(m[2]) });
  }
  return out;
}

/** One nft transaction: delete our rules that match, then add (DNAT from prerouting and output). */
async function applyNft(sys: SystemPorts, dnat: string[], masq: string[], remove: (r: string) => boolean): Promise<void> {
  const existing = await nftRules(sys);
  const lines = existing.filter((x) => remove(x.rule)).map((x) => `delete rule ${NFT_TABLE} ${x.chain} handle ${x.handle}`);
  if (dnat.length || masq.length) {
    lines.unshift(...NFT_SKELETON);
    for (const r of dnat) lines.push(`add rule ${NFT_TABLE} prerouting ${r}`, `add rule ${NFT_TABLE} output ${r}`);
    for (const r of masq) lines.push(`add rule ${NFT_TABLE} postrouting ${r}`);
  }
  if (!lines.length) return;
  const res = await sys.exec.run(['nft', '-f', '-'], { input: `${lines.join('\n')}\n`, allowFail: true });
  if (res.code !== 0) throw new CniError(CNI_ERR.IO_FAILURE, `nft: ${res.stderr.trim()}`);
}

/** DNAT and masquerade chains change in one save + restore per family. */
async function apply(sys: SystemPorts, dnat: Record<4 | 6, string[]>, masq: Record<4 | 6, string[]>, remove: (r: string) => boolean): Promise<void> {
  await applyTagged(sys.exec, 'nat', [
    {
      chain: DNAT_CHAIN,
      hooks: [
        { chain: 'PREROUTING', rule: `-m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}` },
        { chain: 'OUTPUT', rule: `-m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}` },
      ],
      add: dnat,
      remove,
    },
    { chain: SNAT_CHAIN, hooks: [{ chain: 'POSTROUTING', rule: `-j ${SNAT_CHAIN}` }], add: masq, remove },
  ]);
}

export function portmapPlugin(sys: SystemPorts): CniPlugin {
  const tagOf = (a: CniArgs) => ruleTag('tsnet-pm', a.conf.name, a.containerId, a.ifname);
  /** Removes matching rules of the configured backend. */
  const removeAll = (a: CniArgs, remove: (r: string) => boolean) =>
    backendOf(sys, a) === 'nftables' ? applyNft(sys, [], [], remove) : apply(sys, { 4: [], 6: [] }, { 4: [], 6: [] }, remove);
  return {
    keys: KEYS,
    async add(a: CniArgs): Promise<CniResult> {
      const maps = parseMappings(a);
      const prev = a.conf.prevResult!;
      if (!maps.length) return { ...(prev ?? {}), cniVersion: a.conf.cniVersion };
      const ips = containerIps(a);
      const snat = (a.conf as { snat?: boolean }).snat !== false;
      const tag = tagOf(a);
      const backend = backendOf(sys, a);
      try {
        if (backend === 'nftables') {
          const r = nftRulesFor(tag, maps, ips, snat);
          await applyNft(sys, r.dnat, r.masq, tagged(tag));
        } else {
          const r = rulesFor(tag, maps, ips, snat);
          await apply(sys, r.dnat, r.masq, tagged(tag));
        }
        // 127.0.0.1 reaches the container only with route_localnet on the host side (the bridge).
        if (snat) {
          for (const i of prev.interfaces ?? []) {
            if (!i.sandbox && sys.sysctl.get(`net/ipv4/conf/${i.name}/route_localnet`) === '0') sys.sysctl.set(`net/ipv4/conf/${i.name}/route_localnet`, '1');
          }
        }
      } catch (err) {
        await removeAll(a, tagged(tag)).catch(() => undefined);
        throw err;
      }
      return { ...prev, cniVersion: a.conf.cniVersion };
    },
    async del(a: CniArgs): Promise<void> {
      await removeAll(a, tagged(tagOf(a)));
    },
    async check(a: CniArgs): Promise<void> {
      const maps = parseMappings(a);
      if (!maps.length) return;
      if (backendOf(sys, a) === 'nftables') {
        const have = (await nftRules(sys)).filter((x) => x.chain === 'prerouting').map((x) => x.rule);
        for (const r of nftRulesFor(tagOf(a), maps, containerIps(a), false).dnat) if (!have.includes(r)) throw new CniError(CNI_ERR.CHECK_FAILED, `port mapping rule missing: ${r}`);
        return;
      }
      const { dnat } = rulesFor(tagOf(a), maps, containerIps(a), false);
      for (const family of [4, 6] as const) {
        if (!dnat[family].length) continue;
        const saved = await sys.exec.run([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'nat'], { allowFail: true });
        const have = parseIptablesSave(saved.stdout).get('nat')?.rules.get(DNAT_CHAIN) ?? [];
        for (const r of dnat[family]) if (!have.includes(r)) throw new CniError(CNI_ERR.CHECK_FAILED, `port mapping rule missing: ${r}`);
      }
    },
    async gc(a: CniArgs): Promise<void> {
      const list = (a.conf['cni.dev/valid-attachments'] ?? a.conf['cni.dev/attachments'] ?? []) as Array<{ containerID?: string; ifname?: string }>;
      const keep = new Set(list.map((x) => ruleTag('tsnet-pm', a.conf.name, String(x.containerID), String(x.ifname))));
      await removeAll(a, tagged('', { prefix: `tsnet-pm:${a.conf.name}:`, keep }));
    },
    async status(a: CniArgs): Promise<void> {
      const backend = backendOf(sys, a);
      const tool = backend === 'nftables' ? 'nft' : 'iptables-restore';
      if (!onPath(tool, a.env)) throw new CniError(CNI_ERR.NOT_AVAILABLE, `backend ${backend} needs ${tool}, which is not on PATH`);
    },
  };
}
