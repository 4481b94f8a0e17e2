// Sandboxes: network namespaces tsnet makes (named), adopts (--netns, --pid), pins
// for the host (--network host) or shares (container:NAME), and their removal.
import { join } from 'node:path';
import type { StoreTx } from '../store/store.js';
import type { NetworkRecord, SandboxRecord, State } from './model.js';
import { AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, runAll } from '../errors.js';
import { faultPoint } from '../fault.js';
import { CONTAINER_PREFIX, checkRemovable, isContainerMode, planShare } from './sharing.js';
import { findByRef, validateName } from './lookup.js';
import type { CreateSandboxRequest, RemoveResult } from './requests.js';
import { now, type Core } from './core.js';
import type { Publisher } from './publish.js';
import type { Endpoints } from './endpoints.js';

/** Checks of a request that need no state (before the lock is taken). */
export function validateSandboxRequest(req: CreateSandboxRequest): void {
  validateName(req.name, 'sandbox');
  if (req.netnsPath !== undefined && req.pid !== undefined) throw new InvalidConfigError('--netns and --pid cannot be used together');
  if (req.pid !== undefined && (!Number.isInteger(req.pid) || req.pid <= 0)) throw new InvalidConfigError(`--pid ${req.pid} is not a process id`);
}

export class Sandboxes {
  constructor(
    private readonly core: Core,
    private readonly publish: Publisher,
    private readonly endpoints: Endpoints,
  ) {}

  find(s: State, ref: string): SandboxRecord {
    return findByRef(Object.values(s.sandboxes), ref, 'sandbox');
  }

  /** Creates the sandbox and (unless container mode) connects it to its network, or leaves nothing. */
  async create(tx: StoreTx<State>, s: State, req: CreateSandboxRequest, findNetwork: (ref: string) => NetworkRecord): Promise<SandboxRecord> {
    const { sys, runDir } = this.core.d;
    const network = req.network ?? 'bridge';
    if (Object.values(s.sandboxes).some((x) => x.name === req.name)) throw new AlreadyExistsError(`sandbox with name ${req.name} already exists`);
    const id = this.core.hex();
    const pin = join(runDir, 'netns', req.name);
    let sbx: SandboxRecord;
    let net: NetworkRecord | undefined;
    if (isContainerMode(network)) {
      if (req.netnsPath || req.pid || req.ip || req.ip6 || req.ifname || req.publish?.length || req.publishAll) {
        throw new InvalidConfigError('container network mode takes no --netns, --pid, --ip, --ip6, --ifname or -p/-P (publish on the sandbox that owns the namespace)');
      }
      const target = this.find(s, network.slice(CONTAINER_PREFIX.length));
      const share = planShare(target, s);
      sbx = { id, name: req.name, kind: 'container', key: share.key, containerOf: target.id, phase: 'creating', created: now() };
    } else {
      net = findNetwork(network);
      if (net.driver === 'host') {
        if (req.netnsPath || req.pid) throw new InvalidConfigError('--network host uses the host namespace: --netns and --pid do not apply');
        sbx = { id, name: req.name, kind: 'host', key: pin, phase: 'creating', created: now() };
      } else if (req.netnsPath) {
        if (sys.netns.inode(req.netnsPath) === undefined) throw new NotFoundError(`${req.netnsPath} is not a network namespace`);
        this.checkAdoptable(s, req.netnsPath, `--netns ${req.netnsPath}`);
        sbx = { id, name: req.name, kind: 'path', key: req.netnsPath, phase: 'creating', created: now() };
      } else if (req.pid !== undefined) {
        if (sys.netns.inode(`/proc/${req.pid}/ns/net`) === undefined) throw new NotFoundError(`process ${req.pid} not found`);
        this.checkAdoptable(s, `/proc/${req.pid}/ns/net`, `the network namespace of --pid ${req.pid}`);
        sbx = { id, name: req.name, kind: 'pid', key: pin, pid: req.pid, phase: 'creating', created: now() };
      } else {
        sbx = { id, name: req.name, kind: 'named', key: pin, phase: 'creating', created: now() };
      }
    }
    s.sandboxes[id] = sbx;
    tx.write(s);
    try {
      if (sbx.kind === 'named') sys.netns.create(pin);
      else if (sbx.kind === 'pid') sys.netns.pin(`/proc/${req.pid}/ns/net`, pin);
      else if (sbx.kind === 'host') sys.netns.pin('/proc/self/ns/net', pin);
      await faultPoint('sandbox-create:after-netns');
      if (net) await this.endpoints.connect(tx, s, net, sbx, req);
    } catch (err) {
      await this.core.rollback(tx, s, `create sandbox ${req.name}`, err, () => this.teardown(s, sbx));
    }
    sbx.phase = 'ready';
    tx.write(s);
    return sbx;
  }

  /**
   * An adopted namespace (--netns, --pid) must be neither tsnet's own (the host's:
   * an endpoint there would change the host's network; that is --network host) nor
   * one another sandbox already manages (that is --network container:NAME).
   */
  private checkAdoptable(s: State, path: string, what: string): void {
    const { sys } = this.core.d;
    const ino = sys.netns.inode(path);
    if (ino !== undefined && ino === sys.netns.inode('/proc/self/ns/net')) {
      throw new ConflictError(`${what} is the host's own network namespace (tsnet's): use --network host to work in it`);
    }
    const user = Object.values(s.sandboxes).find((x) => x.kind !== 'container' && x.kind !== 'host' && sys.netns.inode(x.key) === ino);
    if (user) throw new ConflictError(`${what} is already the namespace of sandbox ${user.name}: use --network container:${user.name} to share it`);
  }

  /**
   * Removes what can be removed, as Docker's multi-argument rm does: each name on
   * its own, failures reported per name (force: a missing name is no failure).
   * Sandboxes that share the namespace of another one named in the same command go
   * first, so `sandbox rm web sidecar` works in either order.
   */
  async remove(tx: StoreTx<State>, s: State, refs: string[], opts: { force?: boolean }): Promise<RemoveResult> {
    const out: RemoveResult = { removed: [], failed: [] };
    const found: Array<{ ref: string; sbx: SandboxRecord }> = [];
    for (const ref of refs) {
      try {
        const sbx = this.find(s, ref);
        if (!found.some((f) => f.sbx.id === sbx.id)) found.push({ ref, sbx });
      } catch (err) {
        if (!(opts.force && err instanceof NotFoundError)) out.failed.push({ ref, error: err });
      }
    }
    // Dependants first: a sandbox sharing another's namespace before the one it shares.
    const depth = (x: SandboxRecord): number => (x.containerOf && s.sandboxes[x.containerOf] ? 1 + depth(s.sandboxes[x.containerOf]!) : 0);
    found.sort((a, b) => depth(b.sbx) - depth(a.sbx));
    for (const { ref, sbx: x } of found) {
      try {
        checkRemovable(x, s);
        x.phase = 'removing';
        for (const e of this.core.endpointsOf(s, (y) => y.sandboxId === x.id)) e.phase = 'removing';
        tx.write(s);
        await faultPoint('sandbox-rm:after-mark');
        await this.publish.firewall(s);
        await this.publish.proxy(s, true);
        await this.teardown(s, x);
        tx.write(s);
        out.removed.push(ref);
      } catch (err) {
        out.failed.push({ ref, error: err });
      }
    }
    // In the order they were named.
    out.removed.sort((a, b) => refs.indexOf(a) - refs.indexOf(b));
    return out;
  }

  /** Idempotent: disconnects every endpoint, unpins a namespace tsnet pinned, drops the record. */
  async teardown(s: State, sbx: SandboxRecord): Promise<void> {
    await runAll(`remove sandbox ${sbx.name}`, [
      ...this.core.endpointsOf(s, (e) => e.sandboxId === sbx.id).map((e) => () => this.endpoints.teardown(s, e)),
      () => {
        if (sbx.kind === 'named' || sbx.kind === 'pid' || sbx.kind === 'host') this.core.d.sys.netns.remove(sbx.key);
      },
    ]);
    delete s.sandboxes[sbx.id];
  }
}
