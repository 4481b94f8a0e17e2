// tsnet-bridge: a drop-in for the reference bridge plugin. A Linux bridge in the
// runtime's namespace, a veth pair per attachment (the container end born inside
// the container's namespace under CNI_IFNAME), addresses from the IPAM plugin,
// routes, and masquerade. The host end's name and alias derive from the
// attachment (container id + ifname), so DEL and GC find it without the namespace.
import { randomBytes } from 'node:crypto';
import type { Kernel, LinkInfo } from '../system/kernel.js';
import { formatCidr, formatIp, macFromBytes, parseCidr } from '../ipam/addr.js';
import { validateIfname, parseMac, parseMtu } from '../plumbing/names.js';
import { CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, parsePrevResult, validAttachments, type CniResult } from './spec.js';
import { ipamPlugin } from './ipam.js';
import { applyTagged, attachmentHash, installed, networkTagPrefix, ruleTag, tagged, withFirewallLock, type CniHost } from './rules.js';
import { CNI_BRIDGE } from '../firewall/ownership.js';
import { ensureSysctl } from '../plumbing/sysctl.js';
import { ensureAddresses, ensureBridgeDevice, hasVlans, ifAddress, setPortVlans, type IfAddress, type PortVlans } from '../plumbing/bridge.js';
import { plugVeth, unplugVeth, type RouteSpec } from '../plumbing/veth.js';
import { ConflictError, SyscallError } from '../errors.js';

const KEYS = ['bridge', 'isGateway', 'isDefaultGateway', 'forceAddress', 'ipMasq', 'hairpinMode', 'promiscMode', 'mtu', 'ipam', 'vlan', 'macspoofchk', 'enabledad', 'preserveDefaultVlan', 'vlanTrunk', 'portIsolation'];
const MASQ_CHAIN = CNI_BRIDGE.chains[0];

interface BridgeConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipMasq: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  mtu?: number;
  /** Access VLAN of the container's port (0: none). */
  vlan: number;
  /** Tagged VLANs of the container's port (a trunk). */
  trunk: number[];
  preserveDefaultVlan: boolean;
  /** IPv6 duplicate address detection on the container end (the reference turns it off unless asked). */
  enableDad: boolean;
  /** The container's port is isolated: it reaches the bridge's other non-isolated ports only. */
  portIsolation: boolean;
  /** The container end's MAC: runtimeConfig.mac, else args.cni.mac, else CNI_ARGS MAC (the reference's order). */
  mac?: string;
}

/** The port VLANs a configuration asks for. */
const vlansOf = (c: BridgeConf): PortVlans => ({ access: c.vlan, trunk: c.trunk, keepDefault: c.preserveDefaultVlan });

function parseConf(a: CniArgs): BridgeConf {
  const c = a.conf as Record<string, unknown>;
  const bool = (k: string) => {
    if (c[k] === undefined) return false;
    if (typeof c[k] !== 'boolean') throw new CniError(CNI_ERR.INVALID_CONFIG, `"${k}" must be true or false`);
    return c[k] as boolean;
  };
  const vid = (v: unknown, what: string) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 4094) throw new CniError(CNI_ERR.INVALID_CONFIG, `${what} must be an integer from 0 to 4094 (got ${JSON.stringify(v)})`);
    return v;
  };
  const vlan = c.vlan === undefined ? 0 : vid(c.vlan, '"vlan"');
  const trunk: number[] = [];
  if (c.vlanTrunk !== undefined) {
    if (!Array.isArray(c.vlanTrunk)) throw new CniError(CNI_ERR.INVALID_CONFIG, '"vlanTrunk" must be a list of {id} or {minID, maxID}');
    for (const t of c.vlanTrunk as Array<Record<string, unknown>>) {
      if (t?.id !== undefined) trunk.push(vid(t.id, 'vlanTrunk id'));
      else if (t?.minID !== undefined && t?.maxID !== undefined) {
        const [lo, hi] = [vid(t.minID, 'vlanTrunk minID'), vid(t.maxID, 'vlanTrunk maxID')];
        if (lo > hi) throw new CniError(CNI_ERR.INVALID_CONFIG, `vlanTrunk: minID ${lo} is above maxID ${hi}`);
        for (let v = lo; v <= hi; v++) trunk.push(v);
      } else throw new CniError(CNI_ERR.INVALID_CONFIG, '"vlanTrunk" entries need "id" or both "minID" and "maxID"');
    }
    if (trunk.some((v) => v === 0)) throw new CniError(CNI_ERR.INVALID_CONFIG, 'vlanTrunk ids must be 1 to 4094');
  }
  if (vlan && trunk.length) throw new CniError(CNI_ERR.INVALID_CONFIG, 'cannot set "vlan" and "vlanTrunk" at the same time');
  if (c.hairpinMode === true && c.promiscMode === true) throw new CniError(CNI_ERR.INVALID_CONFIG, 'cannot set hairpinMode and promiscMode at the same time');
  if (c.preserveDefaultVlan !== undefined && typeof c.preserveDefaultVlan !== 'boolean') throw new CniError(CNI_ERR.INVALID_CONFIG, '"preserveDefaultVlan" must be true or false');
  const bridge = c.bridge === undefined ? 'cni0' : String(c.bridge);
  try {
    validateIfname(bridge, 'bridge');
    validateIfname(a.ifname || 'eth0', 'CNI_IFNAME');
  } catch (err) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, (err as Error).message);
  }
  let mtu: number | undefined;
  if (c.mtu !== undefined) {
    try {
      mtu = parseMtu(c.mtu as number);
    } catch (err) {
      throw new CniError(CNI_ERR.INVALID_CONFIG, (err as Error).message);
    }
  }
  const isDefaultGateway = bool('isDefaultGateway');
  const runtimeMac = (c.runtimeConfig as { mac?: unknown } | undefined)?.mac;
  const argsMac = ((c.args as { cni?: { mac?: unknown } } | undefined)?.cni)?.mac;
  const chosen = [[runtimeMac, 'runtimeConfig.mac'], [argsMac, 'args.cni.mac'], [a.args.MAC, 'CNI_ARGS MAC']].find(([v]) => v !== undefined && v !== '');
  let mac: string | undefined;
  if (chosen) {
    try {
      mac = parseMac(chosen[0], chosen[1] as string);
    } catch (err) {
      throw new CniError(CNI_ERR.INVALID_CONFIG, (err as Error).message);
    }
  }
  return {
    bridge, isGateway: bool('isGateway') || isDefaultGateway, isDefaultGateway, ipMasq: bool('ipMasq'), hairpinMode: bool('hairpinMode'), promiscMode: bool('promiscMode'), mtu,
    vlan, trunk: [...new Set(trunk)], preserveDefaultVlan: c.preserveDefaultVlan !== false,
    enableDad: bool('enabledad'), portIsolation: bool('portIsolation'), mac,
  };
}

export const hostVethName = (a: CniArgs) => `tsc${attachmentHash(a.containerId, a.ifname).slice(0, 12)}`;
/** The host end's alias: bounded (an alias holds 255 bytes; container ids may be long). */
const aliasOf = (network: string, containerId: string, ifname: string) => ruleTag('tsnet-cni', network, containerId, ifname);
/** The alias earlier versions wrote (GC keeps their valid attachments too). */
const legacyAliasOf = (network: string, containerId: string, ifname: string) => `tsnet-cni:${network}:${containerId}:${ifname}`;
/** Rule comment: network name and attachment (the alias's text), so GC of one network leaves the others' rules. */
const masqCommentOf = aliasOf;
const masqComment = (a: CniArgs) => masqCommentOf(a.conf.name, a.containerId, a.ifname);

/** A plugin type is a name looked up in CNI_PATH, never a path (as libcni refuses "invalid plugin name"). */
export function validatePluginType(type: unknown, what: string): string {
  if (typeof type !== 'string' || !type) throw new CniError(CNI_ERR.INVALID_CONFIG, `${what} needs a "type"`);
  if (type.includes('/') || type === '.' || type === '..' || type.includes('\0')) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid plugin name ${JSON.stringify(type)} in ${what}: a plugin type is a file name in CNI_PATH, not a path`);
  }
  return type;
}

/** Delegates to the IPAM plugin: in-process for tsnet-ipam, the binary from CNI_PATH otherwise. */
async function ipam(h: CniHost, a: CniArgs, command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS'): Promise<CniResult | undefined> {
  const section = a.conf.ipam as { type?: unknown } | undefined;
  if (!section || typeof section !== 'object') throw new CniError(CNI_ERR.INVALID_CONFIG, 'tsnet-bridge needs an "ipam" section with a "type"');
  const type = validatePluginType(section.type, 'the "ipam" section');
  if (type === 'tsnet-ipam') {
    const p = ipamPlugin(h);
    if (command === 'ADD') return p.add(a);
    if (command === 'DEL') await p.del(a);
    else if (command === 'CHECK') await p.check(a);
    else if (command === 'STATUS') await p.status?.(a);
    else await p.gc?.(a);
    return undefined;
  }
  const bin = h.sys.exec.which(type, a.path);
  if (!bin) throw new CniError(CNI_ERR.INVALID_CONFIG, `IPAM plugin "${type}" not found in CNI_PATH (${a.path.join(':')})`);
  const r = await h.sys.exec.run([bin], { input: JSON.stringify(a.conf), env: { ...a.env, CNI_COMMAND: command }, allowFail: true });
  if (r.code !== 0) {
    let e: { code?: number; msg?: string } = {};
    try {
      e = JSON.parse(r.stdout);
    } catch {
      e = { msg: r.stderr.trim() || `exit ${r.code}` };
    }
    throw new CniError(typeof e.code === 'number' ? e.code : 999, `IPAM plugin ${type}: ${e.msg ?? 'failed'}`);
  }
  return command === 'ADD' ? parsePrevResult(JSON.parse(r.stdout)) : undefined;
}

/**
 * Adds (or, with remove, deletes) this attachment's masquerade rules in the
 * TSNET-CNI-MASQ chain: traffic from its address to anywhere outside its subnet.
 * With gcKeep, deletes every rule of this network whose attachment is not kept.
 */
async function masquerade(h: CniHost, a: CniArgs, ips: Array<{ address: string }>, remove: boolean, gcKeep?: Set<string>): Promise<void> {
  const tag = masqComment(a);
  const add: Record<4 | 6, string[]> = { 4: [], 6: [] };
  if (!remove) {
    for (const ip of ips) {
      const c = parseCidr(ip.address);
      add[c.family].push(`-s ${ip.address.split('/')[0]}/${c.family === 4 ? 32 : 128} ! -d ${formatCidr(c)} -m comment --comment "${tag}" -j MASQUERADE`);
    }
  }
  await withFirewallLock(h, () =>
    applyTagged(h.sys.exec, [
      {
        table: 'nat',
        chain: MASQ_CHAIN,
        hooks: [{ chain: 'POSTROUTING', rule: `-j ${MASQ_CHAIN}` }],
        add,
        remove: tagged(tag, gcKeep ? { prefix: networkTagPrefix('tsnet-cni', a.conf.name), keep: gcKeep } : undefined),
        dropWhenEmpty: true,
      },
    ]),
  );
}

async function ensureBridge(h: CniHost, c: BridgeConf, gateways: IfAddress[]): Promise<LinkInfo> {
  const nl = h.sys.netlink();
  try {
    let br: LinkInfo;
    try {
      const spec = { name: c.bridge, mtu: c.mtu, mac: macFromBytes(randomBytes(4)), alias: 'tsnet-cni:bridge', vlanFiltering: hasVlans(vlansOf(c)) };
      br = (await ensureBridgeDevice(nl, spec, { create: true, promisc: c.promiscMode }))!;
    } catch (err) {
      if (err instanceof ConflictError) throw new CniError(CNI_ERR.INVALID_CONFIG, err.message);
      throw vlanUnsupported(err, c);
    }
    if (c.isGateway) {
      // With a VLAN the gateway lives on "<bridge>.<vlan>", an access port of that VLAN (as the reference plugin does).
      const gw = c.vlan ? await ensureVlanGateway(h, nl, br, c) : br;
      await ensureAddresses(nl, gw.index, gateways);
    }
    return br;
  } finally {
    nl.close();
  }
}

/** A kernel without bridge VLAN filtering answers EOPNOTSUPP: say so in the spec's terms. */
function vlanUnsupported(err: unknown, c: BridgeConf): unknown {
  if ((c.vlan || c.trunk.length) && err instanceof SyscallError && err.errno === 'EOPNOTSUPP') {
    return new CniError(CNI_ERR.UNSUPPORTED_FIELD, `"vlan"/"vlanTrunk" need bridge VLAN filtering, which this kernel does not support (CONFIG_BRIDGE_VLAN_FILTERING)`);
  }
  return err;
}

/** The gateway interface of a VLAN: a veth whose one end is an access port of the VLAN on the bridge. */
async function ensureVlanGateway(h: CniHost, nl: ReturnType<Kernel['netlink']>, br: LinkInfo, c: BridgeConf): Promise<LinkInfo> {
  const { sys } = h;
  const name = `${c.bridge}.${c.vlan}`;
  if (name.length > 15) throw new CniError(CNI_ERR.INVALID_CONFIG, `the VLAN gateway interface name ${name} is longer than 15 bytes: use a shorter bridge name`);
  const existing = await nl.getLinkByName(name);
  if (existing) return existing;
  const self = sys.netns.open('/proc/self/ns/net');
  let port: LinkInfo;
  try {
    port = await nl.createVeth({ name: `tsg${attachmentHash(c.bridge, String(c.vlan)).slice(0, 12)}`, peerName: name, peerNetnsFd: self, mtu: c.mtu ?? br.mtu, master: br.index, alias: 'tsnet-cni:bridge' });
  } catch (err) {
    // A parallel ADD may have made it first.
    const raced = await nl.getLinkByName(name);
    if (raced) return raced;
    throw err;
  } finally {
    sys.netns.close(self);
  }
  try {
    await setPortVlans(nl, port.index, { ...vlansOf(c), trunk: [] }).catch((err: unknown) => {
      throw vlanUnsupported(err, c);
    });
    await nl.setLinkUp(port.index);
    const gw = await nl.getLinkByName(name);
    if (!gw) throw new SyscallError('netlink', 'ENODEV', `${name} did not appear`);
    await nl.setLinkUp(gw.index);
    return gw;
  } catch (err) {
    // Half-made: deleting the port takes its peer along; what cannot be undone is logged.
    await nl.deleteLink(port.index).catch((undoErr: unknown) => h.log.error({ err: undoErr }, `tsnet-bridge: could not delete the half-made VLAN gateway veth of ${name}`));
    throw err;
  }
}

const removeVeth = (sys: Kernel, a: CniArgs) => unplugVeth(sys, hostVethName(a)); // takes the container end with it

export function bridgePlugin(h: CniHost): CniPlugin {
  const { sys } = h;
  /** Rollback: every step runs; what could not be undone is logged, the original failure is reported. */
  const undo = async (what: string, step: () => Promise<unknown>) => {
    try {
      await step();
    } catch (err) {
      h.log.error({ err }, `tsnet-bridge: rollback could not ${what}`);
    }
  };
  return {
    keys: KEYS,
    async add(a: CniArgs): Promise<CniResult> {
      const c = parseConf(a);
      if (sys.netns.inode(a.netns) === undefined) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${a.netns} does not exist`);
      const res = (await ipam(h, a, 'ADD'))!;
      const ips = res.ips ?? [];
      if (!ips.length) throw new CniError(CNI_ERR.INVALID_CONFIG, 'the IPAM plugin returned no address');
      try {
        const gateways = ips.filter((ip) => ip.gateway).map((ip) => ({ ...ifAddress(ip.address), address: ip.gateway! }));
        const br = await ensureBridge(h, c, gateways);
        if (c.isGateway || c.ipMasq) {
          if (ips.some((ip) => parseCidr(ip.address).family === 4)) ensureSysctl(sys.sysctl, 'net.ipv4.ip_forward', '1');
          if (ips.some((ip) => parseCidr(ip.address).family === 6)) ensureSysctl(sys.sysctl, 'net.ipv6.conf.all.forwarding', '1');
        }
        const routes: RouteSpec[] = (res.routes ?? []).map((r) => {
          const dst = parseCidr(r.dst);
          const gateway = r.gw ?? ips.find((ip) => parseCidr(ip.address).family === dst.family)?.gateway;
          return { family: dst.family, dst: formatCidr(dst).split('/')[0], dstLen: dst.prefixLen, gateway };
        });
        if (c.isDefaultGateway) {
          for (const ip of ips) {
            const family = parseCidr(ip.address).family;
            if (ip.gateway && !routes.some((r) => r.family === family && !r.dstLen)) routes.push({ family, dstLen: 0, gateway: ip.gateway });
          }
        }
        const fd = sys.netns.open(a.netns);
        let plugged: Awaited<ReturnType<typeof plugVeth>>;
        try {
          plugged = await plugVeth(sys, {
            hostName: hostVethName(a),
            master: br.index,
            alias: aliasOf(a.conf.name, a.containerId, a.ifname),
            peerName: a.ifname,
            nsFd: fd,
            peerMac: c.mac,
            mtu: c.mtu ?? br.mtu,
            where: a.netns,
            hairpin: c.hairpinMode,
            isolated: c.portIsolation,
            vlans: vlansOf(c),
            dad: c.enableDad,
            addresses: ips.map((ip) => ifAddress(ip.address)),
            routes,
          }).catch((err: unknown) => {
            throw vlanUnsupported(err, c);
          });
        } finally {
          sys.netns.close(fd);
        }
        const { host: veth, peer } = plugged;
        const mac = peer.mac;
        if (c.ipMasq) await masquerade(h, a, ips, false);
        return {
          cniVersion: a.conf.cniVersion,
          interfaces: [
            { name: c.bridge, mac: br.mac },
            { name: veth.name, mac: veth.mac },
            { name: a.ifname, mac, sandbox: a.netns },
          ],
          ips: ips.map((ip) => ({ ...ip, interface: 2 })),
          routes: res.routes ?? [],
          dns: res.dns ?? {},
        };
      } catch (err) {
        // Roll back everything this ADD did; report the original failure.
        await undo('delete the veth', () => removeVeth(sys, a));
        await undo('remove the masquerade rules', () => masquerade(h, a, [], true));
        await undo('release the addresses', () => ipam(h, a, 'DEL'));
        throw err;
      }
    },
    async del(a: CniArgs): Promise<void> {
      parseConf(a);
      // Everything is found from the attachment itself: no namespace needed.
      await removeVeth(sys, a);
      await masquerade(h, a, [], true);
      await ipam(h, a, 'DEL');
    },
    async check(a: CniArgs): Promise<void> {
      const c = parseConf(a);
      if (a.conf.prevResult === undefined) throw new CniError(CNI_ERR.INVALID_CONFIG, 'CHECK needs prevResult');
      const prev = parsePrevResult(a.conf.prevResult);
      await ipam(h, a, 'CHECK');
      const nl = sys.netlink();
      try {
        const br = await nl.getLinkByName(c.bridge);
        const veth = await nl.getLinkByName(hostVethName(a));
        if (!br || !veth || veth.master !== br.index) throw new CniError(CNI_ERR.CHECK_FAILED, `${hostVethName(a)} is not attached to ${c.bridge}`);
      } finally {
        nl.close();
      }
      if (sys.netns.inode(a.netns) === undefined) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${a.netns} does not exist`);
      const fd = sys.netns.open(a.netns);
      const inner = sys.netlink(fd);
      try {
        const eth = await inner.getLinkByName(a.ifname);
        if (!eth) throw new CniError(CNI_ERR.CHECK_FAILED, `${a.ifname} is missing in the container`);
        const have = (await inner.listAddresses()).filter((x) => x.index === eth.index).map((x) => `${x.address}/${x.prefixLen}`);
        for (const ip of prev.ips ?? []) {
          const c = parseCidr(ip.address);
          const want = `${formatIp({ family: c.family, value: c.address })}/${c.prefixLen}`;
          if (!have.includes(want)) throw new CniError(CNI_ERR.CHECK_FAILED, `address ${ip.address} is missing on ${a.ifname}`);
        }
      } finally {
        inner.close();
        sys.netns.close(fd);
      }
    },
    async gc(a: CniArgs): Promise<void> {
      const list = validAttachments(a.conf);
      await ipam(h, a, 'GC');
      const net = a.conf.name;
      const valid = new Set(list.flatMap((x) => [aliasOf(net, x.containerID, x.ifname), legacyAliasOf(net, x.containerID, x.ifname)]));
      await masquerade(h, a, [], true, new Set(list.map((x) => masqCommentOf(net, x.containerID, x.ifname))));
      const prefix = networkTagPrefix('tsnet-cni', net);
      const nl = sys.netlink();
      try {
        for (const l of await nl.listLinks()) {
          if (l.alias?.startsWith(prefix) && !valid.has(l.alias)) await nl.deleteLink(l.index);
        }
      } finally {
        nl.close();
      }
    },
    async status(a: CniArgs): Promise<void> {
      parseConf(a);
      // Masquerade needs iptables; the IPAM plugin answers for itself (its own code, 50 or 51).
      if ((a.conf as { ipMasq?: boolean }).ipMasq && !installed(h, a.env, 'iptables-restore')) {
        throw new CniError(CNI_ERR.NOT_AVAILABLE, 'ipMasq needs iptables-restore, which is not on PATH');
      }
      await ipam(h, a, 'STATUS');
    },
  };
}
