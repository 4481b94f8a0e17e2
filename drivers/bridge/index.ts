// The bridge driver (the docker0 model): a Linux bridge with the gateway address,
// one veth pair per endpoint whose container end is created directly inside the
// sandbox under its final name, forwarding, masquerade and isolation through the
// firewall backend.
import { randomBytes } from 'node:crypto';
import type { DriverContext, DriverNetworkPlan, EndpointPlan, EndpointRequest, JoinContext, NetworkDriver, NetworkSpec, OpenSandbox, PlanContext } from '../../src/driverapi/driver.js';
import { refuseHostSandbox } from '../../src/driverapi/checks.js';
import { allocateAddress, prefixLenOf } from '../../src/ipam/allocator.js';
import { macFromIpv4, parseIp } from '../../src/ipam/addr.js';
import { validateIfname } from '../../src/plumbing/names.js';
import type { EndpointRecord, NetworkRecord } from '../../src/controller/model.js';
import type { LinkInfo } from '../../src/system/kernel.js';
import { ensureAddresses, ensureBridgeDevice, ifAddress, removeAddresses, type IfAddress } from '../../src/plumbing/bridge.js';
import { plugVeth, unplugVeth } from '../../src/plumbing/veth.js';
import type { FwNetwork } from '../../src/firewall/backend.js';
import { ConflictError, InvalidConfigError, SyscallError } from '../../src/errors.js';
import { macFromBytes, parseCidr } from '../../src/ipam/addr.js';
import { OPT, defaultHostIP, parseBridgeOptions } from './options.js';
import { ensureSysctl } from '../../src/plumbing/sysctl.js';

export const DEFAULT_BRIDGE = 'tsnet0';
export const DEFAULT_MTU = 1500;

/** Link alias that marks a link as created by this tsnet instance. */
export const linkTag = (instance: string, ...parts: string[]) => ['tsnet', instance, ...parts].join(':');

/** The network's gateway addresses on its bridge. */
const gatewayAddresses = (net: NetworkRecord): IfAddress[] =>
  net.subnets.map((s) => ({ family: parseCidr(s.subnet).family, address: s.gateway!, prefixLen: parseCidr(s.subnet).prefixLen }));

export class BridgeDriver implements NetworkDriver {
  readonly type = 'bridge';
  readonly userCreatable = true;
  readonly ipam = true;
  readonly predefined = {
    name: 'bridge',
    options: { [OPT.NAME]: DEFAULT_BRIDGE, [OPT.ICC]: 'true', [OPT.MASQ]: 'true', [OPT.MTU]: String(DEFAULT_MTU), [OPT.DEFAULT_BRIDGE]: 'true' },
  };
  constructor(private readonly instance: string) {}

  plan(spec: NetworkSpec, ctx: PlanContext): DriverNetworkPlan {
    const o = parseBridgeOptions(spec.options, spec.mtu);
    const name = o.name ?? (spec.name === 'bridge' ? DEFAULT_BRIDGE : `tsn-${ctx.id.slice(0, 11)}`);
    const clash = ctx.networks.find((n) => n.bridge?.name === name);
    if (clash) throw new ConflictError(`bridge ${name} is already used by network ${clash.name}`);
    const existing = ctx.hostLinks.find((l) => l.name === name);
    if (existing && existing.kind !== 'bridge') {
      throw new ConflictError(`a ${existing.kind ?? 'non-bridge'} link named ${name} already exists on the host`);
    }
    const options = { ...spec.options };
    if (spec.mtu !== undefined) options[OPT.MTU] = String(spec.mtu);
    return {
      options,
      bridge: { name, owned: !existing, mtu: o.mtu ?? DEFAULT_MTU, icc: o.icc, masquerade: o.masquerade },
    };
  }

  checkJoin(net: NetworkRecord, join: JoinContext, req: EndpointRequest): void {
    refuseHostSandbox(net, join);
    if (req.ifname !== undefined) {
      validateIfname(req.ifname, 'interface name');
      if (join.siblings.some((x) => x.endpoint.ifname === req.ifname)) throw new ConflictError(`sandbox ${join.sandbox.name} already has an interface named ${req.ifname}`);
    }
    if (req.ip6 && !net.enableIPv6) throw new InvalidConfigError(`network ${net.name} does not have IPv6 enabled: --ip6 ${req.ip6} cannot be used`);
    if (req.publishing && net.internal) throw new InvalidConfigError(`network ${net.name} is internal: ports cannot be published from it`);
  }

  /**
   * The interface in the sandbox (--ifname, or the prefix and the first free
   * number: eth0, eth1 ...), the host end (tsv + 12 hex of the endpoint id),
   * addresses from the network's subnets (Docker's serial order), the gateway
   * unless internal, and Docker's MAC (02:42 + the IPv4 address).
   */
  planEndpoint(net: NetworkRecord, id: string, join: JoinContext, req: EndpointRequest, random: (n: number) => Buffer): EndpointPlan {
    let ifname = req.ifname;
    if (ifname === undefined) {
      const prefix = net.options[OPT.IFACE_PREFIX] ?? 'eth';
      let i = 0;
      while (join.siblings.some((x) => x.endpoint.ifname === `${prefix}${i}`)) i++;
      ifname = `${prefix}${i}`;
    }
    const plan: EndpointPlan = { ifname, hostIfname: `tsv${id.slice(0, 12)}`, defaultHostIP: defaultHostIP(net.options) };
    const hasFamily = (f: 4 | 6) => net.subnets.some((x) => parseCidr(x.subnet).family === f);
    if (hasFamily(4)) {
      const a = allocateAddress(net.subnets, 4, id, net.name, req.ip);
      plan.ipv4 = `${a.address}/${prefixLenOf(a.subnet.subnet)}`;
      plan.gateway4 = net.internal ? undefined : a.subnet.gateway;
      plan.mac = macFromIpv4(parseIp(a.address).value);
    } else if (req.ip) {
      throw new InvalidConfigError(`network ${net.name} has no IPv4 subnet for --ip ${req.ip}`);
    }
    if (net.enableIPv6 && hasFamily(6)) {
      const a = allocateAddress(net.subnets, 6, id, net.name, req.ip6);
      plan.ipv6 = `${a.address}/${prefixLenOf(a.subnet.subnet)}`;
      plan.gateway6 = net.internal ? undefined : a.subnet.gateway;
    }
    plan.mac ??= macFromBytes(random(4));
    return plan;
  }

  private bridgeOf(net: NetworkRecord) {
    if (!net.bridge) throw new InvalidConfigError(`network ${net.name} has no bridge configuration`);
    return net.bridge;
  }

  networkPresent(net: NetworkRecord, hostLinks: ReadonlyMap<string, LinkInfo>): boolean {
    const l = net.bridge ? hostLinks.get(net.bridge.name) : undefined;
    return Boolean(l && l.up && l.kind === 'bridge');
  }

  async ensureNetwork(net: NetworkRecord, ctx: DriverContext): Promise<void> {
    const br = this.bridgeOf(net);
    const nl = ctx.sys.netlink();
    try {
      const spec = { name: br.name, mtu: br.mtu, alias: linkTag(this.instance, net.name), mac: macFromBytes(randomBytes(4)) };
      const link = await ensureBridgeDevice(nl, spec, { create: br.owned, enforceMtu: br.owned });
      if (!link) throw new ConflictError(`bridge ${br.name} of network ${net.name} is gone and was not created by tsnet`);
      await ensureAddresses(nl, link.index, gatewayAddresses(net));
    } finally {
      nl.close();
    }
    if (!net.internal) {
      ensureSysctl(ctx.sys.sysctl, 'net.ipv4.ip_forward', '1');
      if (net.enableIPv6) ensureSysctl(ctx.sys.sysctl, 'net.ipv6.conf.all.forwarding', '1');
    }
    this.ensureSettings(net, ctx);
  }

  ensureSettings(net: NetworkRecord, ctx: DriverContext): void {
    const br = this.bridgeOf(net);
    // Without the userland proxy, published ports answer on 127.0.0.1 through NAT, which
    // needs route_localnet (the firewall's raw rule drops loopback addresses arriving on
    // any interface but lo, so this opens nothing else). With the proxy it stays off.
    const key = `net/ipv4/conf/${br.name}/route_localnet`;
    const want = ctx.localhostNat && !net.internal ? '1' : '0';
    const have = ctx.sys.sysctl.get(key);
    if (have === undefined || have === want || (want === '0' && !br.owned)) return; // gone, right, or not ours to turn off
    ctx.sys.sysctl.set(key, want);
  }

  async deleteNetwork(net: NetworkRecord, ctx: DriverContext): Promise<void> {
    const br = this.bridgeOf(net);
    const nl = ctx.sys.netlink();
    try {
      const link = await nl.getLinkByName(br.name);
      if (!link) return;
      if (br.owned) await nl.deleteLink(link.index);
      else await removeAddresses(nl, link.index, gatewayAddresses(net)); // an adopted bridge stays; only our gateway addresses go
    } finally {
      nl.close();
    }
  }

  async join(net: NetworkRecord, ep: EndpointRecord, sbx: OpenSandbox, ctx: DriverContext): Promise<void> {
    const br = this.bridgeOf(net);
    if (!ep.hostIfname) throw new InvalidConfigError(`endpoint ${ep.id} has no host interface name`);
    const host = ctx.sys.netlink();
    let bridge: LinkInfo | undefined;
    try {
      bridge = await host.getLinkByName(br.name);
    } finally {
      host.close();
    }
    if (!bridge) throw new SyscallError('netlink', 'ENODEV', `bridge ${br.name} of network ${net.name} does not exist`);
    // Hairpin lets a container reach its own published port through a host address
    // (the DNAT'd packet leaves the bridge by the port it came in): only for
    // endpoints that publish ports, since it also reflects their broadcasts, and
    // with it the interface hears its own neighbour solicitations, which would fail
    // IPv6 duplicate address detection of its link-local address.
    const hairpin = Boolean(ep.ports?.length);
    const gateways = net.internal ? [] : ([[4, ep.gateway4], [6, ep.gateway6]] as const).filter((g): g is readonly [4 | 6, string] => Boolean(g[1]));
    await plugVeth(ctx.sys, {
      hostName: ep.hostIfname,
      master: bridge.index,
      alias: linkTag(this.instance, net.name, ep.id.slice(0, 12)),
      peerName: ep.ifname,
      nsFd: sbx.nsFd,
      peerMac: ep.mac,
      mtu: br.mtu,
      where: `sandbox ${sbx.record.name}`,
      hairpin,
      isolated: !br.icc,
      dad: hairpin ? false : undefined,
      loopbackUp: true,
      addresses: [ep.ipv4, ep.ipv6].filter((x): x is string => Boolean(x)).map(ifAddress),
      // The first network with a gateway gives the default route (Docker's behaviour for multi-homed containers).
      defaultGateways: gateways.map(([family, gateway]) => ({ family, gateway })),
    });
  }

  async leave(_net: NetworkRecord, ep: EndpointRecord, sbx: OpenSandbox | undefined, ctx: DriverContext): Promise<void> {
    await unplugVeth(ctx.sys, ep.hostIfname, sbx && { nsFd: sbx.nsFd, name: ep.ifname, mac: ep.mac });
  }

  ownedLinks(net: NetworkRecord, eps: EndpointRecord[]): string[] {
    const out = eps.map((e) => e.hostIfname).filter((x): x is string => Boolean(x));
    if (net.bridge) out.push(net.bridge.name);
    return out;
  }

  endpointPresent(net: NetworkRecord, ep: EndpointRecord, hostLinks: ReadonlyMap<string, LinkInfo>): boolean {
    const bridge = net.bridge ? hostLinks.get(net.bridge.name) : undefined;
    const veth = ep.hostIfname ? hostLinks.get(ep.hostIfname) : undefined;
    return Boolean(bridge && veth && veth.master === bridge.index && veth.up);
  }

  firewall(net: NetworkRecord): FwNetwork | undefined {
    const br = net.bridge;
    if (!br) return undefined;
    return {
      id: net.id,
      name: net.name,
      bridge: br.name,
      subnets: net.subnets.map((s) => ({ family: parseCidr(s.subnet).family, cidr: s.subnet })),
      internal: net.internal,
      icc: br.icc,
      masquerade: br.masquerade,
    };
  }
}
