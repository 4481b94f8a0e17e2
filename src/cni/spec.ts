// CNI specification types and constants (spec 1.1.0, with 1.0.0 and 0.4.0 results).
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
