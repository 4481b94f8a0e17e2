// tsnet-ipam: a drop-in for the reference host-local IPAM plugin, with its
// configuration and its on-disk layout (one file per address under
// dataDir/NETWORK, named by the address and holding "containerID\nifname", a
// last_reserved_ip.N per range set, all under an flock). Unlike host-local it
// implements GC, so addresses of attachments that no longer exist are freed.
import { accessSync, closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { nativeAddon } from '../system/real/addon.js';
import { cidrContains, cidrLast, formatIp, parseCidr, parseIp, type Cidr } from '../ipam/addr.js';
import { CniError, type CniArgs, type CniPlugin } from './skel.js';
import { CNI_ERR, type CniIp, type CniResult } from './spec.js';

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
  return { sets, conf };
}

/** mkdir -p, one component at a time: Node's recursive mkdir loops forever where a
 * filesystem answers ENOENT under an existing directory (/proc does). */
function ensureDir(dir: string): void {
  let path = '';
  for (const part of dir.split('/').filter(Boolean)) {
    path += `/${part}`;
    try {
      mkdirSync(path, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

function withLock<T>(dir: string, fn: () => T): T {
  ensureDir(dir);
  const fd = openSync(join(dir, 'lock'), fsc.O_CREAT | fsc.O_RDWR, 0o644);
  try {
    nativeAddon().flock(fd, 'ex');
    return fn();
  } finally {
    closeSync(fd);
  }
}

const owner = (a: { containerId: string; ifname: string }) => `${a.containerId}\n${a.ifname}`;
const isAddressFile = (f: string) => f !== 'lock' && !f.startsWith('last_reserved_ip') && !f.startsWith('.');

function readOwner(dir: string, f: string): { containerId: string; ifname: string } | undefined {
  try {
    const [containerId = '', ifname = ''] = readFileSync(join(dir, f), 'utf8').split(/\r?\n/);
    return { containerId: containerId.trim(), ifname: ifname.trim() };
  } catch {
    return undefined;
  }
}

/** The addresses held by one attachment, per file name. */
function heldBy(dir: string, a: { containerId: string; ifname: string }): string[] {
  return readdirSync(dir).filter(isAddressFile).filter((f) => {
    const o = readOwner(dir, f);
    return o && o.containerId === a.containerId && o.ifname === a.ifname;
  });
}

function allocateIn(dir: string, set: Range[], idx: number, a: CniArgs): CniIp {
  const family = set[0]!.subnet.family;
  const mine = heldBy(dir, a).map((f) => parseIp(f)).find((ip) => set.some((r) => cidrContains(r.subnet, ip)));
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
    last = parseIp(readFileSync(lastFile, 'utf8').trim()).value;
  } catch {
    last = undefined;
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
      try {
        const fd = openSync(join(dir, name), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
        writeFileSync(fd, owner(a));
        closeSync(fd);
        writeFileSync(lastFile, name);
        return pick(r, ip);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
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

export function ipamPlugin(): CniPlugin {
  const dirOf = (a: CniArgs, conf: IpamConf) => join(conf.dataDir ?? DEFAULT_DATA_DIR, a.conf.name);
  return {
    keys: 'any',
    async add(a: CniArgs): Promise<CniResult> {
      const { sets, conf } = parseIpamConf(a.conf.ipam);
      const dir = dirOf(a, conf);
      const ips = withLock(dir, () => {
        const got: CniIp[] = [];
        try {
          sets.forEach((set, i) => got.push(allocateIn(dir, set, i, a)));
        } catch (err) {
          // All or nothing: release what this ADD reserved.
          for (const f of heldBy(dir, a)) unlinkSync(join(dir, f));
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
      withLock(dir, () => {
        for (const f of heldBy(dir, a)) unlinkSync(join(dir, f));
      });
    },
    async check(a: CniArgs): Promise<void> {
      const { sets, conf } = parseIpamConf(a.conf.ipam);
      const dir = dirOf(a, conf);
      const held = withLock(dir, () => heldBy(dir, a)).map((f) => parseIp(f));
      for (let i = 0; i < sets.length; i++) {
        if (!held.some((ip) => sets[i]!.some((r) => cidrContains(r.subnet, ip)))) {
          throw new CniError(CNI_ERR.CHECK_FAILED, `${a.containerId}/${a.ifname} holds no address in range set ${i}`);
        }
      }
    },
    async gc(a: CniArgs): Promise<void> {
      const conf = parseIpamConf(a.conf.ipam).conf;
      const list = (a.conf['cni.dev/valid-attachments'] ?? a.conf['cni.dev/attachments'] ?? []) as Array<{ containerID?: string; ifname?: string }>;
      if (!Array.isArray(list)) throw new CniError(CNI_ERR.INVALID_CONFIG, 'cni.dev/valid-attachments must be a list');
      const valid = new Set(list.map((x) => `${x.containerID}\n${x.ifname}`));
      const dir = dirOf(a, conf);
      withLock(dir, () => {
        for (const f of readdirSync(dir).filter(isAddressFile)) {
          const o = readOwner(dir, f);
          if (o && !valid.has(`${o.containerId}\n${o.ifname}`)) unlinkSync(join(dir, f));
        }
      });
    },
    async status(a: CniArgs): Promise<void> {
      // Ready when the configuration is valid and the network's directory can be written.
      const dir = dirOf(a, parseIpamConf(a.conf.ipam).conf);
      try {
        ensureDir(dir);
        accessSync(dir, fsc.W_OK);
      } catch (err) {
        throw new CniError(CNI_ERR.NOT_AVAILABLE, `tsnet-ipam cannot write its data directory ${dir}: ${(err as Error).message}`);
      }
    },
  };
}
