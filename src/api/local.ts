// LocalApi: the Api over the controller, in the caller's process (the CLI without
// a daemon). Reads take one snapshot of the state and build views from it;
// changes are the controller's transactions.
import { asTsnetError } from '../errors.js';
import type { Controller } from '../controller/controller.js';
import type { RemoveResult } from '../controller/requests.js';
import type { State } from '../controller/model.js';
import type { Api, Filters, InspectView, NetworkSummary, Removal, SandboxPorts, SandboxSummary } from './api.js';
import { networkFilter, sandboxFilter } from './filters.js';
import type { ContainerApi, ImageApi } from './runtime.js';
import { inspectNetwork, inspectSandbox, publishedPorts, type PortView } from './views.js';

const byName = <T extends { name: string }>(a: T, b: T) => a.name.localeCompare(b.name);
const removal = (r: RemoveResult): Removal => ({ removed: r.removed, failed: r.failed.map((f) => ({ ref: f.ref, error: asTsnetError(f.error) })) });

export class LocalApi implements Api {
  constructor(
    private readonly c: Controller,
    private readonly view: PortView,
    readonly containers: ContainerApi,
    readonly images: ImageApi,
  ) {}

  /** Lost ports by endpoint id, for inspect. */
  private async lostByEndpoint(s: State): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const l of await this.c.lostPorts(s)) if (l.endpointId) out.set(l.endpointId, [...(out.get(l.endpointId) ?? []), l.text]);
    return out;
  }

  /** An endpoint whose published ports are not all held says so in LostPorts (absent when none is lost). */
  private static addLost(endpoints: Record<string, Record<string, unknown>>, lost: Map<string, string[]>): void {
    for (const ep of Object.values(endpoints)) {
      const l = lost.get(String(ep.EndpointID));
      if (l) ep.LostPorts = l;
    }
  }

  async listNetworks(filters: Filters = {}): Promise<NetworkSummary[]> {
    const s = await this.c.snapshot();
    return Object.values(s.networks)
      .filter(networkFilter(s, filters))
      .sort(byName)
      .map((n) => ({ id: n.id, name: n.name, driver: n.driver, scope: 'local', ipv6: n.enableIPv6, internal: n.internal, labels: n.labels, created: n.created }));
  }

  async inspectNetworks(refs: string[]): Promise<InspectView[]> {
    const s = await this.c.snapshot();
    const found = refs.map((r) => this.c.findNetwork(s, r));
    const lost = await this.lostByEndpoint(s);
    return found.map((n) => {
      const v = inspectNetwork(n, s, this.view);
      LocalApi.addLost(v.Containers as Record<string, Record<string, unknown>>, lost);
      return v;
    });
  }

  async createNetwork(req: Parameters<Api['createNetwork']>[0]): Promise<{ id: string }> {
    return { id: (await this.c.createNetwork(req)).id };
  }

  async removeNetworks(refs: string[], opts: { force?: boolean } = {}): Promise<Removal> {
    return removal(await this.c.removeNetworks(refs, opts));
  }

  pruneNetworks(): Promise<string[]> {
    return this.c.pruneNetworks();
  }

  async connect(network: string, sandbox: string, opts: Parameters<Api['connect']>[2] = {}): Promise<void> {
    await this.c.connect(network, sandbox, opts);
  }

  disconnect(network: string, sandbox: string): Promise<void> {
    return this.c.disconnect(network, sandbox);
  }

  async createSandbox(req: Parameters<Api['createSandbox']>[0]): Promise<{ id: string }> {
    return { id: (await this.c.createSandbox(req)).id };
  }

  async listSandboxes(filters: Filters = {}): Promise<SandboxSummary[]> {
    const s = await this.c.snapshot();
    const endpointsOf = (id: string) => Object.values(s.endpoints).filter((e) => e.sandboxId === id);
    return Object.values(s.sandboxes)
      .filter(sandboxFilter(s, filters))
      .sort(byName)
      .map((x) => ({
        id: x.id,
        name: x.name,
        kind: x.kind,
        networks: endpointsOf(x.id).map((e) => s.networks[e.networkId]?.name ?? '?').sort(),
        key: x.key,
        created: x.created,
        ports: endpointsOf(x.id).flatMap((e) => publishedPorts(e, this.view)),
      }));
  }

  async inspectSandboxes(refs: string[]): Promise<InspectView[]> {
    const s = await this.c.snapshot();
    const found = refs.map((r) => this.c.findSandbox(s, r));
    const lost = await this.lostByEndpoint(s);
    return found.map((x) => {
      const v = inspectSandbox(x, s, this.view);
      LocalApi.addLost(v.Networks as Record<string, Record<string, unknown>>, lost);
      return v;
    });
  }

  async removeSandboxes(refs: string[], opts: { force?: boolean } = {}): Promise<Removal> {
    return removal(await this.c.removeSandboxes(refs, opts));
  }

  async sandboxKey(ref: string): Promise<string> {
    const s = await this.c.snapshot();
    return this.c.findSandbox(s, ref).key;
  }

  async ports(ref: string, port?: string): Promise<SandboxPorts> {
    const s = await this.c.snapshot();
    const x = this.c.findSandbox(s, ref);
    const mine = Object.values(s.endpoints).filter((e) => e.sandboxId === x.id);
    const wanted = (p: { containerPort: number; proto: string }) => !port || port === `${p.containerPort}/${p.proto}` || (port === `${p.containerPort}` && p.proto === 'tcp');
    const ids = new Set(mine.map((e) => e.id));
    return {
      ports: mine.flatMap((e) => publishedPorts(e, this.view)).filter(wanted),
      lost: (await this.c.lostPorts(s)).filter((l) => l.endpointId && ids.has(l.endpointId)).map((l) => l.text),
    };
  }

  async reconcile(): Promise<void> {
    await this.c.reconcile();
  }
}
