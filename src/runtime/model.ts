// The runtime's persisted records: containers, with Docker's Config and HostConfig
// as the user asked for them, and their state. Kept in ROOT/containers/state.json
// (its own store and lock; a container operation takes this lock first and the
// network store's inside it, never the other way round).
import type { RecordPhase } from '../controller/model.js';

export interface MountSpec {
  type: 'bind' | 'tmpfs';
  /** Host path (bind). */
  source?: string;
  /** Path in the container. */
  target: string;
  readOnly: boolean;
  /** tmpfs: size in bytes, mode. */
  tmpfsSize?: number;
  tmpfsMode?: number;
  /** bind: propagation (rprivate default). */
  propagation?: string;
}

export interface UlimitSpec {
  name: string;
  soft: number;
  hard: number;
}

/** Docker's Config (what the image and the command give). */
export interface ContainerConfig {
  Hostname: string;
  Domainname: string;
  User: string;
  Env: string[];
  Cmd: string[];
  Entrypoint: string[];
  Image: string;
  WorkingDir: string;
  Labels: Record<string, string>;
  StopSignal: string;
  StopTimeout?: number;
  ExposedPorts: Record<string, Record<string, never>>;
  Tty: boolean;
  OpenStdin: boolean;
}

/** Docker's HostConfig (how tsnet runs it). */
export interface HostConfig {
  NetworkMode: string;
  /** Extra networks (Docker connects them after start). */
  Networks: string[];
  PortBindings: string[];
  PublishAllPorts: boolean;
  IP?: string;
  Mounts: MountSpec[];
  Memory: number;
  MemorySwap: number;
  NanoCpus: number;
  CpuShares: number;
  CpusetCpus: string;
  PidsLimit: number;
  ReadonlyRootfs: boolean;
  Init: boolean;
  AutoRemove: boolean;
  CapAdd: string[];
  CapDrop: string[];
  SecurityOpt: string[];
  Privileged: boolean;
  Ulimits: UlimitSpec[];
  LogConfig: { Type: 'json-file'; Config: Record<string, string> };
  CgroupParent: string;
}

export type ContainerStatus = 'created' | 'starting' | 'running' | 'exited' | 'removing';

export interface ContainerState {
  status: ContainerStatus;
  pid: number;
  /** Start time of the process (/proc/PID/stat field 22): a pid reused by another process does not match. */
  pidStart?: number;
  monitorPid: number;
  monitorStart?: number;
  exitCode: number;
  oomKilled: boolean;
  error: string;
  startedAt: string;
  finishedAt: string;
}

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  /** Image ID (sha256:...). */
  image: string;
  /** Diff IDs of the image's layers (the rootfs lower dirs, bottom first). */
  layers: string[];
  config: ContainerConfig;
  hostConfig: HostConfig;
  state: ContainerState;
  phase: RecordPhase;
  /** The sandbox holding its network namespace while it runs (by name). */
  sandbox?: string;
}

export interface RuntimeState {
  version: 1;
  containers: Record<string, ContainerRecord>;
}

export const emptyRuntime = (): RuntimeState => ({ version: 1, containers: {} });

export function parseRuntimeState(raw: unknown): RuntimeState {
  const s = raw as RuntimeState;
  if (!s || typeof s !== 'object' || s.version !== 1 || typeof s.containers !== 'object' || s.containers === null) throw new Error('not a container state of version 1');
  for (const [id, c] of Object.entries(s.containers)) {
    if (!c || c.id !== id || typeof c.name !== 'string' || typeof c.state?.status !== 'string') throw new Error(`containers.${id} is not a container record`);
  }
  return s;
}

export const initialState = (): ContainerState => ({ status: 'created', pid: 0, monitorPid: 0, exitCode: 0, oomKilled: false, error: '', startedAt: '0001-01-01T00:00:00Z', finishedAt: '0001-01-01T00:00:00Z' });
