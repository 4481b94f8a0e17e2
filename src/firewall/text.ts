// What tsnet writes into firewall rule text. Rules reach the kernel through
// iptables-restore and `nft -f`, whose inputs are line- and quote-structured: a
// name carrying a quote or a newline would add rules of its own. Names are
// validated where they enter, and every renderer also passes what it embeds
// through these guards, which refuse anything outside a plain character set.
import { InvalidConfigError } from '../errors.js';

const COMMENT_RE = /^[A-Za-z0-9_.:@/-]+$/;
const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;
/** iptables' comment match holds at most 255 bytes (256 with the NUL). */
export const MAX_COMMENT = 255;

/** A rule comment's text, checked; returns it as written (unquoted). */
export function commentText(text: string): string {
  if (!COMMENT_RE.test(text) || text.length > MAX_COMMENT) {
    throw new InvalidConfigError(`refusing to write the rule comment ${JSON.stringify(text)}: only letters, digits and _ . : @ / - (at most ${MAX_COMMENT} bytes)`);
  }
  return text;
}

/** `-m comment --comment "TEXT"` (iptables) or `comment "TEXT"` (nft), checked. */
export const iptComment = (text: string) => `-m comment --comment "${commentText(text)}"`;
export const nftComment = (text: string) => `comment "${commentText(text)}"`;

/** An interface name as it goes into `-i`/`-o` or a quoted nft ifname, checked. */
export function ifaceText(name: string): string {
  if (!IFACE_RE.test(name)) throw new InvalidConfigError(`refusing to write the interface name ${JSON.stringify(name)} into a rule`);
  return name;
}
