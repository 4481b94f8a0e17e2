// The Api's containers and images: what front ends ask of the runtime, in views.
// LocalContainers/LocalImages implement it in the caller's process; the engine's
// gRPC services will be the second implementation.
import { readFileSync, rmSync } from 'node:fs';
import type { TsnetError } from '../errors.js';
import { ConflictError, asTsnetError } from '../errors.js';
import type { Controller } from '../controller/controller.js';
import { Runtime, type StartHooks } from '../runtime/containers.js';
import type { ImageConfigBody, ImageStore } from '../runtime/images/store.js';
import type { Writable } from 'node:stream';
import { pull } from '../runtime/images/pull.js';
import type { RegistryClient } from '../runtime/images/registry.js';
import type { ContainerRecord } from '../runtime/model.js';
import type { CreateContainerRequest } from '../runtime/spec.js';
import { inspectSandbox, portMap, publishedPorts, type PortView, type PublishedPort } from './views.js';
import type { Filters, InspectView } from './api.js';

export type { CreateContainerRequest };

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  command: string;
  created: string;
  /** created | running | exited */
  state: string;
  /** Docker's words: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created". */
  status: string;
  ports: PublishedPort[];
  labels: Record<string, string>;
  networks: string[];
}

export interface LogRecord {
  stream: 'stdout' | 'stderr';
  /** The line as written, newline included. */
  log: string;
  time: string;
}

export interface Outcome {
  done: string[];
  failed: Array<{ ref: string; error: TsnetError }>;
}

export interface ContainerApi {
  create(req: CreateContainerRequest): Promise<{ id: string; name: string }>;
  start(ref: string, hooks?: StartHooks): Promise<void>;
  stop(refs: string[], timeout?: number): Promise<Outcome>;
  kill(refs: string[], signal?: string): Promise<Outcome>;
  remove(refs: string[], opts?: { force?: boolean }): Promise<Outcome>;
  list(opts?: { all?: boolean; filters?: Filters }): Promise<ContainerSummary[]>;
  inspect(refs: string[]): Promise<InspectView[]>;
  wait(ref: string): Promise<number>;
  logs(ref: string, opts?: { follow?: boolean; tail?: number }): AsyncIterable<LogRecord>;
  /** How to run a process in it (local front ends run the helper with their own stdio). */
  execPlan(ref: string, req: { cmd: string[]; env?: string[]; user?: string; workdir?: string }): Promise<{ argv: string[]; done: () => void }>;
  /** The monitor's attach socket of a running container. */
  attachPath(ref: string): Promise<string>;
  /** Processes in it (pid, command line), from its cgroup. */
  top(ref: string): Promise<Array<{ pid: number; cmd: string }>>;
  /** One sample of each container's counters (the running ones, or all); refs empty: every one. */
  stats(refs: string[], opts?: { all?: boolean }): Promise<StatsSample[]>;
  prune(): Promise<string[]>;
  /** The monitor's last act when a container exits. */
  cleanup(id: string): Promise<void>;
}

/** Counters of one container at one moment (CPU % comes from two samples). */
export interface StatsSample {
  id: string;
  name: string;
  running: boolean;
  /** CLOCK_MONOTONIC, ns. */
  at: number;
  cpuNs: number;
  memoryUsage: number;
  /** 0: no limit of its own. */
  memoryLimit: number;
  netRx: number;
  netTx: number;
  blkRead: number;
  blkWrite: number;
  pids: number;
}

export interface ImageView {
  id: string;
  repoTags: string[];
  created: string;
  size: number;
}

export interface PullView {
  image: ImageView;
  ref: string;
  digest: string;
  upToDate: boolean;
}

export interface ImageApi {
  /** A root filesystem tarball (a path, or a stream) as a one-layer image; changes are `-c` instructions. */
  import(source: string | NodeJS.ReadableStream, ref?: string, changes?: ImageConfigBody): Promise<ImageView>;
  /** A docker save archive or OCI layout: a path, or a stream of a tar. */
  load(source: string | NodeJS.ReadableStream): Promise<Array<{ image: ImageView; tags: string[] }>>;
  /** Pulls from a registry; progress gets Docker's non-terminal lines. */
  pull(ref: string, opts: { insecure?: boolean }, progress?: (line: string) => void): Promise<PullView>;
  /** Writes the images as one tar (OCI layout + docker save manifest). */
  save(refs: string[], out: NodeJS.WritableStream): Promise<void>;
  list(): Promise<ImageView[]>;
  inspect(refs: string[]): Promise<InspectView[]>;
  remove(refs: string[], opts?: { force?: boolean }): Promise<{ lines: string[]; failed: Array<{ ref: string; error: TsnetError }> }>;
  tag(source: string, target: string): Promise<void>;
}

/** "3 seconds", "About a minute", "2 hours": Docker's HumanDuration. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  return `${Math.floor(h / 24)} days`;
}

export function statusText(c: ContainerRecord, nowMs = Date.now()): string {
  const st = c.state;
  if (st.status === 'running' || st.status === 'starting') return `Up ${humanDuration(nowMs - Date.parse(st.startedAt))}`;
  if (st.status === 'exited') return `Exited (${st.exitCode}) ${humanDuration(nowMs - Date.parse(st.finishedAt))} ago`;
  if (st.status === 'removing') return 'Removal In Progress';
  return 'Created';
}

const outcome = async (refs: string[], fn: (r: string) => Promise<unknown>): Promise<Outcome> => {
  const o: Outcome = { done: [], failed: [] };
  for (const r of refs) {
    try {
      await fn(r);
      o.done.push(r);
    } catch (err) {
      o.failed.push({ ref: r, error: asTsnetError(err) });
    }
  }
  return o;
};

export class LocalContainers implements ContainerApi {
  constructor(
    private readonly rt: Runtime,
    private readonly images: ImageStore,
    private readonly c: Controller,
    private readonly view: PortView,
  ) {}

  async create(req: CreateContainerRequest): Promise<{ id: string; name: string }> {
    const r = await this.rt.create(req);
    return { id: r.id, name: r.name };
  }

  async start(ref: string, hooks: StartHooks = {}): Promise<void> {
    await this.rt.start(ref, hooks);
  }

  stop(refs: string[], timeout?: number): Promise<Outcome> {
    return outcome(refs, (r) => this.rt.stop(r, timeout));
  }

  kill(refs: string[], signal?: string): Promise<Outcome> {
    return outcome(refs, (r) => this.rt.kill(r, signal));
  }

  remove(refs: string[], opts: { force?: boolean } = {}): Promise<Outcome> {
    return outcome(refs, (r) => this.rt.remove(r, opts));
  }

  async list(opts: { all?: boolean; filters?: Filters } = {}): Promise<ContainerSummary[]> {
    const s = await this.rt.snapshot();
    const ns = await this.c.snapshot();
    const f = opts.filters ?? {};
    const imgs = this.images.read();
    return Object.values(s.containers)
      .filter((x) => opts.all || x.state.status === 'running')
      .filter((x) => !f.name || f.name.some((n) => x.name.includes(n)))
      .filter((x) => !f.status || f.status.includes(x.state.status))
      .filter((x) => !f.id || f.id.some((i) => x.id.startsWith(i)))
      .filter((x) => !f.label || f.label.every((l) => (l.includes('=') ? x.config.Labels[l.split('=')[0]!] === l.slice(l.indexOf('=') + 1) : l in x.config.Labels)))
      .sort((a, b) => b.created.localeCompare(a.created))
      .map((x) => {
        const sbx = x.sandbox ? Object.values(ns.sandboxes).find((y) => y.name === x.sandbox) : undefined;
        const eps = sbx ? Object.values(ns.endpoints).filter((e) => e.sandboxId === sbx.id) : [];
        const tags = Object.entries(imgs.tags).filter(([, id]) => id === x.image).map(([t]) => t);
        return {
          id: x.id,
          name: x.name,
          image: tags.includes(x.config.Image) || tags.includes(`${x.config.Image}:latest`) ? x.config.Image : (tags[0] ?? x.image.slice(7, 19)),
          command: [...x.config.Entrypoint, ...x.config.Cmd].join(' '),
          created: x.created,
          state: x.state.status,
          status: statusText(x),
          ports: eps.flatMap((e) => publishedPorts(e, this.view)),
          labels: x.config.Labels,
          networks: eps.map((e) => ns.networks[e.networkId]?.name ?? '?').sort(),
        };
      });
  }

  async inspect(refs: string[]): Promise<InspectView[]> {
    const s = await this.rt.snapshot();
    const ns = await this.c.snapshot();
    return refs.map((ref) => {
      const x = this.rt.find(s, ref);
      const sbx = x.sandbox ? Object.values(ns.sandboxes).find((y) => y.name === x.sandbox) : undefined;
      const eps = sbx ? Object.values(ns.endpoints).filter((e) => e.sandboxId === sbx.id) : [];
      const ports: Record<string, unknown> = {};
      for (const k of Object.keys(x.config.ExposedPorts)) ports[k] = null;
      for (const e of eps) Object.assign(ports, portMap(e, this.view));
      const sv = sbx ? inspectSandbox(sbx, ns, this.view) : undefined;
      const first = eps[0];
      const cdir = this.rt.cdir(x);
      const argv = [...x.config.Entrypoint, ...x.config.Cmd];
      return {
        Id: x.id,
        Created: x.created,
        Path: argv[0] ?? '',
        Args: argv.slice(1),
        State: {
          Status: x.state.status === 'starting' ? 'created' : x.state.status,
          Running: x.state.status === 'running',
          Paused: false,
          Restarting: false,
          OOMKilled: x.state.oomKilled,
          Dead: false,
          Pid: x.state.pid,
          ExitCode: x.state.exitCode,
          Error: x.state.error,
          StartedAt: x.state.startedAt,
          FinishedAt: x.state.finishedAt,
        },
        Image: x.image,
        ResolvConfPath: `${cdir}/resolv.conf`,
        HostnamePath: `${cdir}/hostname`,
        HostsPath: `${cdir}/hosts`,
        LogPath: this.rt.logPath(x),
        Name: `/${x.name}`,
        RestartCount: 0,
        Driver: 'overlay2',
        Platform: 'linux',
        HostConfig: { ...x.hostConfig, Binds: x.hostConfig.Mounts.filter((m) => m.type === 'bind').map((m) => `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`) },
        GraphDriver: {
          Name: 'overlay2',
          Data: {
            LowerDir: [...x.layers].reverse().map((l) => this.images.layerDir(l)).join(':'),
            UpperDir: `${cdir}/rootfs/upper`,
            WorkDir: `${cdir}/rootfs/work`,
            MergedDir: this.rt.merged(x),
          },
        },
        Mounts: x.hostConfig.Mounts.map((m) => ({ Type: m.type, Source: m.source ?? '', Destination: m.target, Mode: m.readOnly ? 'ro' : '', RW: !m.readOnly, Propagation: m.type === 'bind' ? (m.propagation ?? 'rprivate') : '' })),
        Config: x.config,
        NetworkSettings: {
          SandboxID: sbx?.id ?? '',
          SandboxKey: sbx?.key ?? '',
          Ports: ports,
          IPAddress: first?.ipv4?.split('/')[0] ?? '',
          IPPrefixLen: first?.ipv4 ? Number(first.ipv4.split('/')[1]) : 0,
          Gateway: first?.gateway4 ?? '',
          GlobalIPv6Address: first?.ipv6?.split('/')[0] ?? '',
          MacAddress: first?.mac ?? '',
          Networks: sv?.Networks ?? {},
        },
      };
    });
  }

  wait(ref: string): Promise<number> {
    return this.rt.wait(ref);
  }

  async *logs(ref: string, opts: { follow?: boolean; tail?: number } = {}): AsyncIterable<LogRecord> {
    const x = this.rt.find(await this.rt.snapshot(), ref);
    const parse = (l: string): LogRecord | undefined => {
      try {
        return JSON.parse(l) as LogRecord;
      } catch {
        return undefined;
      }
    };
    const all: string[] = [];
    let offset = 0;
    let ino = 0;
    const files = this.rt.logFiles(x);
    for (const [i, f] of files.entries()) {
      const r = Runtime.readFrom(f, 0);
      all.push(...r.lines);
      if (i === files.length - 1) {
        offset = r.offset;
        ino = r.ino;
      }
    }
    const start = opts.tail !== undefined && opts.tail >= 0 ? Math.max(0, all.length - opts.tail) : 0;
    for (const l of all.slice(start)) {
      const r = parse(l);
      if (r) yield r;
    }
    if (!opts.follow) return;
    for (;;) {
      const cur = this.rt.store.read().containers[x.id];
      const running = cur?.state.status === 'running' && !this.rt.readExit(x);
      const r = Runtime.readFrom(this.rt.logPath(x), ino && offset ? offset : 0);
      if (r.ino && ino && r.ino !== ino) {
        // rotated: the rest of the old file is in .1 now; start the new one from its beginning
        offset = 0;
        ino = r.ino;
        continue;
      }
      ino = r.ino || ino;
      offset = r.offset;
      for (const l of r.lines) {
        const rec = parse(l);
        if (rec) yield rec;
      }
      if (!running && !r.lines.length) return;
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async execPlan(ref: string, req: { cmd: string[]; env?: string[]; user?: string; workdir?: string }): Promise<{ argv: string[]; done: () => void }> {
    const p = await this.rt.execPlan(ref, req);
    return { argv: p.argv, done: () => rmSync(p.plan, { force: true }) };
  }

  async attachPath(ref: string): Promise<string> {
    const x = this.rt.find(await this.rt.snapshot(), ref);
    if (x.state.status !== 'running') throw new ConflictError(`You cannot attach to a stopped container, start it first`);
    return this.rt.attachPath(x);
  }

  async top(ref: string): Promise<Array<{ pid: number; cmd: string }>> {
    const x = this.rt.find(await this.rt.snapshot(), ref);
    if (x.state.status !== 'running') throw new ConflictError(`Container ${x.id} is not running`);
    return this.rt.processes(x).map((pid) => {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      } catch {
        /* gone */
      }
      return { pid, cmd };
    });
  }

  async stats(refs: string[], opts: { all?: boolean } = {}): Promise<StatsSample[]> {
    const s = await this.rt.snapshot();
    const chosen = refs.length ? refs.map((r) => this.rt.find(s, r)) : Object.values(s.containers).filter((c) => opts.all || c.state.status === 'running');
    return chosen.map((c) => {
      const running = c.state.status === 'running';
      const zero = { cpuNs: 0, memoryUsage: 0, memoryLimit: 0, pids: 0, blkRead: 0, blkWrite: 0 };
      const cg = running ? this.rt.cgroupStats(c) : zero;
      const net = running ? netCounters(c.state.pid) : { rx: 0, tx: 0 };
      // An unlimited v1 cgroup reports a huge number: no limit of its own.
      const limit = cg.memoryLimit > 2 ** 62 ? 0 : cg.memoryLimit;
      return { id: c.id, name: c.name, running, at: Number(process.hrtime.bigint()), ...cg, memoryLimit: limit, netRx: net.rx, netTx: net.tx };
    });
  }

  async prune(): Promise<string[]> {
    const s = await this.rt.snapshot();
    const gone: string[] = [];
    for (const x of Object.values(s.containers)) {
      if (x.state.status !== 'exited' && x.state.status !== 'created') continue;
      await this.rt.remove(x.id);
      gone.push(x.id);
    }
    return gone;
  }

  cleanup(id: string): Promise<void> {
    return this.rt.cleanup(id);
  }
}

/** Bytes in and out of a process's network namespace, every interface but loopback (/proc/PID/net/dev). */
function netCounters(pid: number): { rx: number; tx: number } {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return { rx: 0, tx: 0 };
  }
  let rx = 0;
  let tx = 0;
  for (const l of text.split('\n').slice(2)) {
    const [name, rest] = l.split(':');
    if (!rest || name!.trim() === 'lo') continue;
    const f = rest.trim().split(/\s+/).map(Number);
    rx += f[0] ?? 0;
    tx += f[8] ?? 0;
  }
  return { rx, tx };
}

const view = (s: ImageStore, id: string): ImageView => {
  const st = s.read();
  const im = st.images[id]!;
  return { id: im.id, repoTags: s.tagsOf(st, id), created: im.created, size: im.size };
};

export class LocalImages implements ImageApi {
  constructor(
    private readonly s: ImageStore,
    private readonly inUse: () => Promise<(id: string) => string | undefined>,
    private readonly registry: (insecure: boolean) => RegistryClient,
  ) {}

  async import(source: string | NodeJS.ReadableStream, ref?: string, changes?: ImageConfigBody): Promise<ImageView> {
    return view(this.s, (await this.s.importRootfs(source, ref, { changes })).id);
  }
  async load(source: string | NodeJS.ReadableStream): Promise<Array<{ image: ImageView; tags: string[] }>> {
    return (await this.s.load(source)).map((x) => ({ image: view(this.s, x.image.id), tags: x.tags }));
  }
  async pull(ref: string, opts: { insecure?: boolean }, progress?: (line: string) => void): Promise<PullView> {
    const r = await pull(this.s, this.registry(Boolean(opts.insecure)), ref, progress);
    return { image: view(this.s, r.image.id), ref: r.ref, digest: r.digest, upToDate: r.upToDate };
  }
  save(refs: string[], out: NodeJS.WritableStream): Promise<void> {
    return this.s.save(refs, out as Writable);
  }
  async list(): Promise<ImageView[]> {
    return this.s.list();
  }
  async inspect(refs: string[]): Promise<InspectView[]> {
    const st = this.s.read();
    return refs.map((r) => {
      const im = this.s.resolve(r, st);
      return {
        Id: im.id,
        RepoTags: this.s.tagsOf(st, im.id),
        RepoDigests: im.repoDigests ?? [],
        Created: im.created,
        Architecture: im.architecture,
        Os: im.os,
        Size: im.size,
        Config: im.config,
        RootFS: { Type: 'layers', Layers: im.layers },
        GraphDriver: { Name: 'overlay2', Data: { LowerDir: [...im.layers].reverse().map((l) => this.s.layerDir(l)).join(':') } },
      };
    });
  }
  async remove(refs: string[], opts: { force?: boolean } = {}) {
    const r = await this.s.remove(refs, await this.inUse(), opts);
    return { lines: r.lines, failed: r.failed.map((f) => ({ ref: f.ref, error: asTsnetError(f.error) })) };
  }
  tag(source: string, target: string): Promise<void> {
    return this.s.tag(source, target);
  }
}
