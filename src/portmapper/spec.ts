// Docker's port publishing syntax, parsed into bindings (pure):
//   [hostIP:][hostPort[-end]:]containerPort[-end][/tcp|udp|sctp]
// IPv6 host addresses go in brackets: [::1]:8080:80.
import { InvalidConfigError } from '../errors.js';
import { formatIp, parseIp } from '../ipam/addr.js';

export type Proto = 'tcp' | 'udp' | 'sctp';
export const PROTOS: readonly Proto[] = ['tcp', 'udp', 'sctp'];

export interface PortRequest {
  proto: Proto;
  /** '' = every address (0.0.0.0 and ::), or one IPv4/IPv6 address. */
  hostIP: string;
  /** Host port range; undefined = pick from the ephemeral range. */
  hostPort?: number;
  hostPortEnd?: number;
  containerPort: number;
  containerPortEnd: number;
}

/** `flag` is how the user wrote it ("-p 8080:80", "--expose 80"), so messages name it. */
function port(text: string, what: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new InvalidConfigError(`invalid ${what} "${text}" in ${flag}`);
  const n = Number(text);
  if (n < 1 || n > 65535) throw new InvalidConfigError(`${what} ${n} in ${flag} is outside 1-65535`);
  return n;
}

function range(text: string, what: string, flag: string): [number, number] {
  const m = /^([^-]+)(?:-([^-]+))?$/.exec(text);
  if (!m) throw new InvalidConfigError(`invalid ${what} "${text}" in ${flag}`);
  const a = port(m[1]!, what, flag);
  const b = m[2] === undefined ? a : port(m[2], what, flag);
  if (b < a) throw new InvalidConfigError(`${what} range ${text} in ${flag} ends before it starts`);
  return [a, b];
}

export function parseProto(text: string | undefined, spec: string): Proto {
  const p = (text ?? 'tcp').toLowerCase();
  if (!PROTOS.includes(p as Proto)) throw new InvalidConfigError(`unknown protocol "${text}" in ${spec}: use tcp, udp or sctp`);
  return p as Proto;
}

export function parsePortSpec(spec: string): PortRequest {
  const s = spec.trim();
  const slash = s.lastIndexOf('/');
  const proto = parseProto(slash >= 0 ? s.slice(slash + 1) : undefined, `-p ${spec}`);
  let rest = slash >= 0 ? s.slice(0, slash) : s;
  let hostIP = '';
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') throw new InvalidConfigError(`invalid -p ${spec}: an IPv6 host address is written [addr]:hostPort:containerPort`);
    const ip = parseIp(rest.slice(1, close), 'host IP');
    if (ip.family !== 6) throw new InvalidConfigError(`invalid -p ${spec}: brackets are for IPv6 addresses`);
    hostIP = formatIp(ip);
    rest = rest.slice(close + 2);
    if (!rest.includes(':')) rest = `:${rest}`;
  }
  const parts = rest.split(':');
  if (parts.length > 3) throw new InvalidConfigError(`invalid -p ${spec}: write IPv6 host addresses in brackets, [addr]:hostPort:containerPort`);
  let hostText: string | undefined;
  let containerText: string;
  if (parts.length === 3) {
    if (hostIP) throw new InvalidConfigError(`invalid -p ${spec}`);
    if (parts[0]) {
      const ip = parseIp(parts[0], 'host IP');
      hostIP = formatIp(ip);
    }
    hostText = parts[1];
    containerText = parts[2]!;
  } else if (parts.length === 2) {
    hostText = parts[0];
    containerText = parts[1]!;
  } else {
    containerText = parts[0]!;
  }
  if (!containerText) throw new InvalidConfigError(`invalid -p ${spec}: no container port`);
  const [cp, cpEnd] = range(containerText, 'container port', `-p ${spec}`);
  const out: PortRequest = { proto, hostIP, containerPort: cp, containerPortEnd: cpEnd };
  if (hostText) {
    const [hp, hpEnd] = range(hostText, 'host port', `-p ${spec}`);
    const hostLen = hpEnd - hp;
    const contLen = cpEnd - cp;
    // A host range with one container port means "any one free port of the range" (Docker).
    if (contLen !== 0 && hostLen !== contLen) {
      throw new InvalidConfigError(`invalid -p ${spec}: host range ${hostText} and container range ${containerText} differ in length`);
    }
    out.hostPort = hp;
    out.hostPortEnd = hpEnd;
  }
  return out;
}

/** `--expose 80`, `--expose 8000-8010/udp`: container ports to publish with -P. */
export function parseExpose(spec: string): PortRequest {
  const s = spec.trim();
  const slash = s.lastIndexOf('/');
  const proto = parseProto(slash >= 0 ? s.slice(slash + 1) : undefined, `--expose ${spec}`);
  const [cp, cpEnd] = range(slash >= 0 ? s.slice(0, slash) : s, 'port', `--expose ${spec}`);
  return { proto, hostIP: '', containerPort: cp, containerPortEnd: cpEnd };
}
