// CNI specification types and constants (spec 1.1.0, with 1.0.0 and 0.4.0 results).
import { TsnetError, type ErrorCode } from '../errors.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST = '1.1.0';

/** The spec's well-known error codes; 100 and above are the plugin's own. */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  CHECK_FAILED: 102,
} as const;

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

export interface CniIp {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIp[];
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  args?: unknown;
  runtimeConfig?: Record<string, unknown>;
  capabilities?: Record<string, boolean>;
  prevResult?: CniResult;
  dns?: CniResult['dns'];
  [key: string]: unknown;
}

/** Keys every plugin accepts (the spec's common ones); plugins add their own. */
export const COMMON_KEYS = [
  'cniVersion', 'cniVersions', 'name', 'type', 'args', 'runtimeConfig', 'capabilities', 'prevResult', 'dns', 'disableCheck', 'disableGC',
  // GC's list of attachments still in use (1.1.0), and its pre-release spelling.
  'cni.dev/valid-attachments', 'cni.dev/attachments',
];

const cmp = (a: string, b: string) => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};
export const versionAtLeast = (v: string, min: string) => cmp(v, min) >= 0;

/** A result in the shape of the requested version (0.3.x/0.4.0 add "version" to each IP). */
export function resultFor(version: string, r: CniResult): Record<string, unknown> {
  const base: Record<string, unknown> = { ...r, cniVersion: version };
  if (!versionAtLeast(version, '1.0.0')) {
    base.ips = (r.ips ?? []).map((ip) => ({ version: ip.address.includes(':') ? '6' : '4', ...ip }));
  }
  return base;
}

/** The tsnet error kind each CNI code stands for (how the CLI or the engine would report it). */
function kindOfCni(code: number): ErrorCode {
  switch (code) {
    case CNI_ERR.UNSUPPORTED_FIELD:
      return 'UNSUPPORTED';
    case CNI_ERR.UNKNOWN_CONTAINER:
      return 'NOT_FOUND';
    case CNI_ERR.TRY_AGAIN_LATER:
      return 'EXHAUSTED';
    case CNI_ERR.NOT_AVAILABLE:
      return 'UNAVAILABLE';
    case CNI_ERR.CHECK_FAILED:
      return 'CHECK_FAILED';
    case CNI_ERR.IO_FAILURE:
      return 'SYSCALL';
    default:
      // 1, 4, 6, 7: the caller's configuration or environment.
      return code < 100 ? 'INVALID_CONFIG' : 'INTERNAL';
  }
}

/**
 * A tsnet error that carries the CNI spec's code it must be reported with (skel
 * prints it as the spec's error object; anything else maps through ERROR_TABLE).
 */
export class CniError extends TsnetError {
  constructor(
    readonly cniCode: number,
    message: string,
    readonly details = '',
  ) {
    super(kindOfCni(cniCode), message);
  }
}
const shapeError = (msg: string) => new CniError(CNI_ERR.INVALID_CONFIG, msg);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A prevResult as the runtime passed it, checked field by field: a chained plugin
 * reads addresses and interfaces from it, and a malformed one is the caller's
 * configuration error (code 7), not a crash.
 */
export function parsePrevResult(v: unknown): CniResult {
  if (!isObject(v)) throw shapeError('prevResult must be an object');
  const list = (key: string) => {
    const x = v[key];
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x)) throw shapeError(`prevResult.${key} must be a list`);
    return x as unknown[];
  };
  const interfaces = list('interfaces').map((x, i) => {
    if (!isObject(x) || typeof x.name !== 'string') throw shapeError(`prevResult.interfaces[${i}] must be an object with a "name"`);
    if (x.sandbox !== undefined && typeof x.sandbox !== 'string') throw shapeError(`prevResult.interfaces[${i}].sandbox must be a string`);
    return x as unknown as CniInterface;
  });
  const ips = list('ips').map((x, i) => {
    if (!isObject(x) || typeof x.address !== 'string') throw shapeError(`prevResult.ips[${i}] must be an object with an "address"`);
    if (x.interface !== undefined && (!Number.isInteger(x.interface) || (x.interface as number) < 0)) throw shapeError(`prevResult.ips[${i}].interface must be an index into interfaces`);
    if (x.gateway !== undefined && typeof x.gateway !== 'string') throw shapeError(`prevResult.ips[${i}].gateway must be a string`);
    return x as unknown as CniIp;
  });
  const routes = list('routes').map((x, i) => {
    if (!isObject(x) || typeof x.dst !== 'string') throw shapeError(`prevResult.routes[${i}] must be an object with a "dst"`);
    return x as { dst: string; gw?: string };
  });
  return { ...(v as unknown as CniResult), interfaces, ips, routes };
}

/** GC's list of attachments still in use ("cni.dev/valid-attachments"), checked. */
export function validAttachments(conf: NetConf): Array<{ containerID: string; ifname: string }> {
  const raw = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'] ?? [];
  if (!Array.isArray(raw)) throw shapeError('cni.dev/valid-attachments must be a list');
  return raw.map((x, i) => {
    if (!isObject(x) || typeof x.containerID !== 'string' || typeof x.ifname !== 'string') {
      throw shapeError(`cni.dev/valid-attachments[${i}] must be an object with "containerID" and "ifname"`);
    }
    return { containerID: x.containerID, ifname: x.ifname };
  });
}
