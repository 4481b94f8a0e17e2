// tsnet-ipam: a drop-in for the reference host-local IPAM plugin, with its
// configuration and its on-disk layout (one file per address under
// dataDir/NETWORK, named by the address and holding "containerID\nifname", a
// last_reserved_ip.N per range set, all under an flock). Unlike host-local it
// implements GC, so addresses of attachments that no longer exist are freed.
import { join } from 'node:path';
import { cidrContains, cidrLast, formatCidr, formatIp, parseCidr, parseIp, type Cidr } from '../ipam/addr.js';
import { CNI_NAME_RE, CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, validAttachments, type CniIp, type CniResult } from './spec.js';
import type { CniHost } from './rules.js';

export interface RangeConf {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

export interface IpamConf {
  type: string;
  ranges?: RangeConf[][];
  subnet?: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
  routes?: Array<{ dst: string; gw?: string }>;
  dataDir?: string;
  resolvConf?: string;
}

const IPAM_KEYS = new Set(['type', 'ranges', 'subnet', 'rangeStart', 'rangeEnd', 'gateway', 'routes', 'dataDir', 'resolvConf']);
export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';

interface Range {
  subnet: Cidr;
  first: bigint;
  last: bigint;
  gateway?: bigint;
}

/** Validates the ipam section into range sets (pure). */
export function parseIpamConf(raw: unknown): { sets: Range[][]; conf: IpamConf } {
  if (!raw || typeof raw !== 'object') throw new CniError(CNI_ERR.INVALID_CONFIG, 'the configuration has no "ipam" section');
  const conf = raw as IpamConf;
  const unknown = Object.keys(conf).filter((k) => !IPAM_KEYS.has(k));
  if (unknown.length) throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `unsupported ipam field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`);
  // A relative path would depend on the working directory of whichever process runs the call.
  if (conf.dataDir !== undefined && (typeof conf.dataDir !== 'string' || !conf.dataDir.startsWith('/'))) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, `ipam "dataDir" must be an absolute path (got ${JSON.stringify(conf.dataDir)})`);
  }
  const setsConf: RangeConf[][] = conf.ranges ?? (conf.subnet ? [[{ subnet: conf.subnet, rangeStart: conf.rangeStart, rangeEnd: conf.rangeEnd, gateway: conf.gateway }]] : []);
  if (!Array.isArray(setsConf) || !setsConf.length) throw new CniError(CNI_ERR.INVALID_CONFIG, 'ipam needs "ranges" (or "subnet")');
  const sets = setsConf.map((set, i) => {
    if (!Array.isArray(set) || !set.length) throw new CniError(CNI_ERR.INVALID_CONFIG, `ipam ranges[${i}] must be a non-empty list of ranges`);
    return set.map((r, j) => {
      const where = `ipam ranges[${i}][${j}]`;
      let subnet: Cidr;
      try {
        subnet = parseCidr(String(r.subnet), { what: `${where}.subnet` });
      } catch (err) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, (err as Error).message);
      }
      // host-local accepts a subnet with host bits set and uses its network.
      const size = cidrLast(subnet) - subnet.network;
      const v4 = subnet.family === 4;
      let first = subnet.network + 1n;
      let last = v4 && size > 1n ? cidrLast(subnet) - 1n : cidrLast(subnet);
      const inSubnet = (text: string, what: string) => {
        const ip = parseIp(text, `${where}.${what}`);
        if (!cidrContains(subnet, ip)) throw new CniError(CNI_ERR.INVALID_CONFIG, `${where}.${what} ${text} is outside ${r.subnet}`);
        return ip.value;
      };
      if (r.rangeStart) first = inSubnet(r.rangeStart, 'rangeStart');
      if (r.rangeEnd) last = inSubnet(r.rangeEnd, 'rangeEnd');
      if (first > last) throw new CniError(CNI_ERR.INVALID_CONFIG, `${where}: rangeStart is after rangeEnd`);
      const gateway = r.gateway ? inSubnet(r.gateway, 'gateway') : subnet.network + 1n;
      return { subnet, first, last, gateway };
    });
  });
  // Every range of every set is its own: overlapping ranges would hand one address out twice.
  const all = sets.flatMap((set, i) => set.map((r, j) => ({ r, at: `ranges[${i}][${j}]`, set: i })));
  sets.forEach((set, i) => {
    if (set.some((r) => r.subnet.family !== set[0]!.subnet.family)) throw new CniError(CNI_ERR.INVALID_CONFIG, `ipam ranges[${i}] mixes IPv4 and IPv6 ranges: use one range set per family`);
  });
  for (let x = 0; x < all.length; x++) {
    for (let y = x + 1; y < all.length; y++) {
      const [p, q] = [all[x]!, all[y]!];
      if (p.r.subnet.family === q.r.subnet.family && p.r.first <= q.r.last && q.r.first <= p.r.last) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, `ipam ${p.at} (${formatCidr(p.r.subnet)}) overlaps ${q.at} (${formatCidr(q.r.subnet)})`);
      }
    }
  }
  return { sets, conf };
}

/** The network's directory: created if missing, and never a symlink (which would put our files elsewhere). */
function networkDir(h: CniHost, dir: string): void {
  h.sys.files.mkdir(dir, 0o755);
  if (h.sys.files.kind(dir) !== 'dir') throw new CniError(CNI_ERR.INVALID_CONFIG, `${dir} is not a directory (a symlink?): tsnet-ipam will not write through it`);
}

/** host-local's lock: an flock on dataDir/NETWORK/lock, waited for without blocking the event loop. */
async function withLock<T>(h: CniHost, dir: string, fn: () => T): Promise<T> {
  networkDir(h, dir);
  return h.sys.locks.withLock(join(dir, 'lock'), fn);
}

const owner = (a: { containerId: string; ifname: string }) => `${a.containerId}\n${a.ifname}`;
const isAddressFile = (f: string) => f !== 'lock' && !f.startsWith('last_reserved_ip') && !f.startsWith('.') && !f.endsWith('.tmp');

function readOwner(h: CniHost, dir: string, f: string): { containerId: string; ifname: string } | undefined {
  let text: string | undefined;
  try {
    text = h.sys.files.read(join(dir, f), { noFollow: true }); // never through a symlink
  } catch {
    text = undefined; // not a readable file: holds nothing
  }
  if (text === undefined) return undefined;
  const [containerId = '', ifname = ''] = text.split(/\r?\n/);
  return { containerId: containerId.trim(), ifname: ifname.trim() };
}

/** The addresses held by one attachment, per file name. */
function heldBy(h: CniHost, dir: string, a: { containerId: string; ifname: string }): string[] {
  return h.sys.files.list(dir).filter(isAddressFile).filter((f) => {
    const o = readOwner(h, dir, f);
    return o && o.containerId === a.containerId && o.ifname === a.ifname;
  });
}

function allocateIn(h: CniHost, dir: string, set: Range[], idx: number, a: CniArgs): CniIp {
  const { files } = h.sys;
  const family = set[0]!.subnet.family;
  const mine = heldBy(h, dir, a).map((f) => parseIp(f)).find((ip) => set.some((r) => cidrContains(r.subnet, ip)));
  const pick = (r: Range, ip: bigint): CniIp => ({
    address: `${formatIp({ family, value: ip })}/${r.subnet.prefixLen}`,
    ...(r.gateway !== undefined ? { gateway: formatIp({ family, value: r.gateway }) } : {}),
  });
  if (mine) {
    const r = set.find((x) => cidrContains(x.subnet, mine))!;
    return pick(r, mine.value); // ADD repeated: the same address
  }
  const lastFile = join(dir, `last_reserved_ip.${idx}`);
  let last: bigint | undefined;
  try {
    last = parseIp((files.read(lastFile, { noFollow: true }) ?? '').trim()).value;
  } catch {
    last = undefined; // absent or not an address: start at the beginning
  }
  // Serial order across the set's ranges, starting after the last address handed out.
  let startRange = 0;
  let startIp: bigint | undefined;
  if (last !== undefined) {
    const ri = set.findIndex((r) => last! >= r.first && last! <= r.last);
    if (ri >= 0) {
      startRange = ri;
      startIp = last + 1n;
    }
  }
  const total = set.reduce((n, r) => n + (r.last - r.first + 1n), 0n);
  let ri = startRange;
  let ip = startIp !== undefined && startIp <= set[ri]!.last ? startIp : set[ri]!.first;
  if (startIp !== undefined && startIp > set[ri]!.last) {
    ri = (ri + 1) % set.length;
    ip = set[ri]!.first;
  }
  for (let n = 0n; n < total; n++) {
    const r = set[ri]!;
    if (ip !== r.gateway) {
      const name = formatIp({ family, value: ip });
      // O_EXCL: taken by another attachment (or a symlink planted there) is not ours.
      if (files.create(join(dir, name), owner(a), 0o644)) {
        // A symlink at last_reserved_ip is replaced, its target untouched.
        files.replace(lastFile, name, { tmp: `${lastFile}.tmp` });
        return pick(r, ip);
      }
    }
    if (ip >= r.last) {
      ri = (ri + 1) % set.length;
      ip = set[ri]!.first;
    } else {
      ip++;
    }
  }
  throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `no free address left in range set ${idx} (${set.map((r) => formatIp({ family, value: r.subnet.network }) + '/' + r.subnet.prefixLen).join(', ')})`);
}

export function ipamPlugin(h: CniHost): CniPlugin {
  const dirOf = (a: CniArgs, conf: IpamConf) => {
    // skel has checked the name already; the path must stay inside dataDir whoever calls.
    if (!CNI_NAME_RE.test(a.conf.name)) throw new CniError(CNI_ERR.INVALID_CONFIG, `invalid network name ${JSON.stringify(a.conf.name)}`);
    return join(conf.dataDir ?? DEFAULT_DATA_DIR, a.conf.name);
  };
  return {
    keys: 'any',
    async add(a: CniArgs): Promise<CniResult> {
      const { sets, conf } = parseIpamConf(a.conf.ipam);
      const dir = dirOf(a, conf);
      const ips = await withLock(h, dir, () => {
        const got: CniIp[] = [];
        try {
          sets.forEach((set, i) => got.push(allocateIn(h, dir, set, i, a)));
        } catch (err) {
          // All or nothing: release what this ADD reserved.
          for (const f of heldBy(h, dir, a)) h.sys.files.remove(join(dir, f));
          throw err;
        }
        return got;
      });
      return {
        cniVersion: a.conf.cniVersion,
        ips,
        routes: (conf.routes ?? []).map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
        dns: {},
      };
    },
    async del(a: CniArgs): Promise<void> {
      const dir = dirOf(a, parseIpamConf(a.conf.ipam).conf);
      await withLock(h, dir, () => {
        for (const f of heldBy(h, dir, a)) h.sys.files.remove(join(dir, f));
      });
    },
    async check(a: CniArgs): Promise<void> {
      const { sets, conf } = parseIpamConf(a.conf.ipam);
      const dir = dirOf(a, conf);
      const held = (await withLock(h, dir, () => heldBy(h, dir, a))).map((f) => parseIp(f));
      for (let i = 0; i < sets.length; i++) {
        if (!held.some((ip) => sets[i]!.some((r) => cidrContains(r.subnet, ip)))) {
          throw new CniError(CNI_ERR.CHECK_FAILED, `${a.containerId}/${a.ifname} holds no address in range set ${i}`);
        }
      }
    },
    async gc(a: CniArgs): Promise<void> {
      const conf = parseIpamConf(a.conf.ipam).conf;
      const list = validAttachments(a.conf);
      const valid = new Set(list.map((x) => `${x.containerID}\n${x.ifname}`));
      const dir = dirOf(a, conf);
      await withLock(h, dir, () => {
        for (const f of h.sys.files.list(dir).filter(isAddressFile)) {
          const o = readOwner(h, dir, f);
          if (o && !valid.has(`${o.containerId}\n${o.ifname}`)) h.sys.files.remove(join(dir, f));
        }
      });
    },
    async status(a: CniArgs): Promise<void> {
      // Ready when the configuration is valid and the network's directory can be written.
      const dir = dirOf(a, parseIpamConf(a.conf.ipam).conf);
      try {
        networkDir(h, dir);
        if (!h.sys.files.writable(dir)) throw new Error('not writable');
      } catch (err) {
        throw new CniError(CNI_ERR.NOT_AVAILABLE, `tsnet-ipam cannot write its data directory ${dir}: ${(err as Error).message}`);
      }
    },
  };
}
