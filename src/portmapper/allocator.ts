// Host port allocation: per protocol and host address, never a port tsnet already
// publishes there, never one another program holds (probed by binding it), ephemeral
// ports from ip_local_port_range minus ip_local_reserved_ports.
import { PortInUseError, ExhaustedError } from '../errors.js';
import type { PortRequest, Proto } from './spec.js';

export interface PortBinding {
  proto: Proto;
  hostIP: string;
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
  containerPortEnd: number;
}

export interface Published extends PortBinding {
  /** Who holds it (sandbox name) for error messages. */
  owner: string;
}

export const FALLBACK_RANGE: [number, number] = [49153, 65535];

/** Parses ip_local_port_range ("32768\t60999") and ip_local_reserved_ports ("8080,9000-9010"). */
export function ephemeralRange(rangeText: string | undefined, reservedText: string | undefined): { first: number; last: number; reserved: Set<number> } {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(rangeText ?? '');
  let first = FALLBACK_RANGE[0];
  let last = FALLBACK_RANGE[1];
  if (m && Number(m[1]) >= 1 && Number(m[2]) <= 65535 && Number(m[1]) <= Number(m[2])) {
    first = Number(m[1]);
    last = Number(m[2]);
  }
  const reserved = new Set<number>();
  for (const part of (reservedText ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    if (!Number.isInteger(a)) continue;
    for (let p = a!; p <= (Number.isInteger(b) ? b! : a!) && p <= 65535; p++) reserved.add(p);
  }
  return { first, last, reserved };
}

const isV6 = (ip: string) => ip.includes(':');
/** Two host addresses collide when equal, or when one is "every address" of an overlapping family. */
export function hostIPsOverlap(a: string, b: string): boolean {
  if (a === b || a === '' || b === '') return true;
  if (a === '0.0.0.0') return !isV6(b);
  if (b === '0.0.0.0') return !isV6(a);
  if (a === '::') return isV6(b);
  if (b === '::') return isV6(a);
  return false;
}

function clash(published: Published[], proto: Proto, hostIP: string, first: number, last: number): Published | undefined {
  return published.find((p) => p.proto === proto && hostIPsOverlap(p.hostIP, hostIP) && p.hostPort <= last && first <= p.hostPortEnd);
}

export const describe = (b: { proto: Proto; hostIP: string; hostPort: number; hostPortEnd?: number }) => {
  const ports = b.hostPortEnd && b.hostPortEnd !== b.hostPort ? `${b.hostPort}-${b.hostPortEnd}` : String(b.hostPort);
  const ip = b.hostIP === '' ? '0.0.0.0' : b.hostIP.includes(':') ? `[${b.hostIP}]` : b.hostIP;
  return `${ip}:${ports}/${b.proto}`;
};

export interface AllocContext {
  published: Published[];
  ephemeral: { first: number; last: number; reserved: Set<number> };
  /** Whether some other program holds proto/hostIP/port (bind probe). */
  inUse(proto: Proto, hostIP: string, port: number): Promise<boolean>;
}

/** Chooses the host ports of one request; throws PortInUse/Exhausted with the port named. */
export async function allocatePorts(req: PortRequest, ctx: AllocContext): Promise<PortBinding> {
  const width = req.containerPortEnd - req.containerPort;
  const tryBlock = async (first: number): Promise<boolean> => {
    const last = first + width;
    if (clash(ctx.published, req.proto, req.hostIP, first, last)) return false;
    for (let p = first; p <= last; p++) if (await ctx.inUse(req.proto, req.hostIP, p)) return false;
    return true;
  };
  const done = (hostPort: number): PortBinding => ({
    proto: req.proto, hostIP: req.hostIP, hostPort, hostPortEnd: hostPort + width, containerPort: req.containerPort, containerPortEnd: req.containerPortEnd,
  });

  if (req.hostPort !== undefined) {
    const rangeEnd = req.hostPortEnd ?? req.hostPort;
    if (rangeEnd - req.hostPort === width) {
      // An exact mapping: the whole block must be free.
      const c = clash(ctx.published, req.proto, req.hostIP, req.hostPort, rangeEnd);
      if (c) throw new PortInUseError(`port ${describe({ ...req, hostPort: req.hostPort, hostPortEnd: rangeEnd })} is already published by sandbox ${c.owner} (${describe(c)})`);
      for (let p = req.hostPort; p <= rangeEnd; p++) {
        if (await ctx.inUse(req.proto, req.hostIP, p)) {
          throw new PortInUseError(`port ${describe({ proto: req.proto, hostIP: req.hostIP, hostPort: p })} is already in use by another program`);
        }
      }
      return done(req.hostPort);
    }
    // One container port, a host range: any free port of the range.
    for (let p = req.hostPort; p <= rangeEnd; p++) if (await tryBlock(p)) return done(p);
    throw new PortInUseError(`no free port in ${describe({ ...req, hostPort: req.hostPort, hostPortEnd: rangeEnd })}`);
  }

  const { first, last, reserved } = ctx.ephemeral;
  const span = last - first + 1 - width;
  if (span <= 0) throw new ExhaustedError(`the ephemeral port range ${first}-${last} cannot hold ${width + 1} ports`);
  // Start at a random offset (as the kernel does) to avoid handing out the same port again at once.
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const p = first + ((start + i) % span);
    let skip = false;
    for (let q = p; q <= p + width; q++) if (reserved.has(q)) skip = true;
    if (!skip && (await tryBlock(p))) return done(p);
  }
  throw new ExhaustedError(`no free ${req.proto} port left in the ephemeral range ${first}-${last}`);
}
