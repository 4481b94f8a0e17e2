// The nftables ruleset generation (NFT_MSG_GETGEN over NETLINK_NETFILTER). Every
// nftables transaction in a namespace bumps it, including those iptables-nft
// makes, so an unchanged generation proves nobody touched the firewall.
import { createNetlink } from 'netlink';
import type { Logger } from '../../log.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETGEN = 16;
const NFTA_GEN_ID = 1;

export async function readNftGeneration(log: Logger): Promise<number | undefined> {
  let sock: ReturnType<typeof createNetlink> | undefined;
  try {
    sock = createNetlink(NETLINK_NETFILTER);
    const [msgs] = await sock.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, Buffer.alloc(4), { timeout: 1000 });
    const d = msgs[0]?.data;
    if (!d) return undefined;
    for (let off = 4; off + 8 <= d.length; ) {
      const len = d.readUInt16LE(off);
      if ((d.readUInt16LE(off + 2) & 0x3fff) === NFTA_GEN_ID) return d.readUInt32BE(off + 4);
      if (len < 4) break;
      off += (len + 3) & ~3;
    }
    return undefined;
  } catch (err) {
    log.debug({ err }, 'nftables generation unavailable');
    return undefined;
  } finally {
    sock?.socket.close();
  }
}
