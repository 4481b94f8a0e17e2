// Minimal netlink attribute (TLV) encoding for what the `netlink` package does not
// encode for us: IFLA_LINKINFO for bridge and veth (with the peer's own ifinfomsg
// and attributes), and nested IFLA_PROTINFO for bridge ports.

export const NLA_F_NESTED = 1 << 15;

export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  MASTER: 10,
  PROTINFO: 12,
  LINKINFO: 18,
  IFALIAS: 20,
  NET_NS_FD: 28,
  EXT_MASK: 29,
  AF_SPEC: 26,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
export const VETH_INFO_PEER = 1;
export const IFLA_BRPORT = { MODE: 4, ISOLATED: 33 } as const;
export const IFLA_BR_VLAN_FILTERING = 7;
export const IFLA_BRIDGE_VLAN_INFO = 2;
export const BRIDGE_VLAN_INFO = { PVID: 2, UNTAGGED: 4 } as const;
export const AF_UNSPEC = 0;
export const AF_BRIDGE = 7;

const align4 = (n: number) => (n + 3) & ~3;

export function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
export const attrNested = (type: number, children: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(children));
export const attrString = (type: number, s: string) => attr(type, Buffer.from(`${s}\0`, 'utf8'));
export function attrU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return attr(type, b);
}
export const attrU8 = (type: number, v: number) => attr(type, Buffer.from([v & 0xff]));
export const attrMac = (type: number, mac: string) => attr(type, Buffer.from(mac.split(':').map((h) => parseInt(h, 16))));

/** struct ifinfomsg: family u8, pad u8, type u16, index s32, flags u32, change u32. */
export function ifinfomsg(opts: { family?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(opts.family ?? AF_UNSPEC, 0);
  b.writeInt32LE(opts.index ?? 0, 4);
  b.writeUInt32LE(opts.flags ?? 0, 8);
  b.writeUInt32LE(opts.change ?? 0, 12);
  return b;
}

/** Walks a buffer of attributes; returns type (without flag bits) -> payload. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

/** IFLA_INFO_KIND out of an IFLA_LINKINFO payload. */
export function linkKind(linkinfo: Buffer | undefined): string | undefined {
  if (!linkinfo) return undefined;
  const kind = parseAttrs(linkinfo).get(IFLA_INFO.KIND);
  return kind ? kind.toString('utf8').replace(/\0+$/, '') : undefined;
}

export function linkinfoBridge(opts: { vlanFiltering?: boolean } = {}): Buffer {
  const parts = [attrString(IFLA_INFO.KIND, 'bridge')];
  if (opts.vlanFiltering) parts.push(attrNested(IFLA_INFO.DATA, [attrU8(IFLA_BR_VLAN_FILTERING, 1)]));
  return attrNested(IFLA.LINKINFO, parts);
}

/** IFLA_AF_SPEC with one struct bridge_vlan_info { u16 flags; u16 vid; }. */
export function afSpecVlan(vid: number, flags: number): Buffer {
  const info = Buffer.alloc(4);
  info.writeUInt16LE(flags, 0);
  info.writeUInt16LE(vid, 2);
  return attrNested(IFLA.AF_SPEC, [attr(IFLA_BRIDGE_VLAN_INFO, info)]);
}

export function linkinfoVeth(peer: { name: string; netnsFd: number; mtu?: number; mac?: string }): Buffer {
  const peerAttrs = [attrString(IFLA.IFNAME, peer.name), attrU32(IFLA.NET_NS_FD, peer.netnsFd)];
  if (peer.mtu) peerAttrs.push(attrU32(IFLA.MTU, peer.mtu));
  if (peer.mac) peerAttrs.push(attrMac(IFLA.ADDRESS, peer.mac));
  const peerPayload = Buffer.concat([ifinfomsg(), ...peerAttrs]);
  return attrNested(IFLA.LINKINFO, [
    attrString(IFLA_INFO.KIND, 'veth'),
    attrNested(IFLA_INFO.DATA, [attr(VETH_INFO_PEER | NLA_F_NESTED, peerPayload)]),
  ]);
}
