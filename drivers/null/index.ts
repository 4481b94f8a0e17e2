// The null driver: the sandbox keeps only its loopback interface (up).
import type { DriverContext, EndpointPlan, EndpointRequest, JoinContext, NetworkDriver, OpenSandbox } from '../../src/driverapi/driver.js';
import type { EndpointRecord, NetworkRecord } from '../../src/controller/model.js';
import { ensureLoopbackUp } from '../../src/plumbing/iface.js';
import { refuseBridgeOptions, refuseHostSandbox } from '../../src/driverapi/checks.js';
import { ConflictError } from '../../src/errors.js';

export class NullDriver implements NetworkDriver {
  readonly type = 'null';
  readonly userCreatable = false;
  readonly predefined = { name: 'none', options: {} };
  readonly exclusive = true;
  plan() {
    return { options: {} };
  }
  checkJoin(net: NetworkRecord, join: JoinContext, req: EndpointRequest): void {
    refuseHostSandbox(net, join);
    if (join.siblings.length) throw new ConflictError(`sandbox ${join.sandbox.name} is connected to other networks: it cannot also join ${net.name} (driver null)`);
    refuseBridgeOptions(net, req);
  }
  planEndpoint(): EndpointPlan {
    return { ifname: '', defaultHostIP: '' };
  }
  async ensureNetwork(): Promise<void> {}
  async deleteNetwork(): Promise<void> {}
  async join(_net: NetworkRecord, _ep: EndpointRecord, sbx: OpenSandbox, ctx: DriverContext): Promise<void> {
    await ensureLoopbackUp(ctx.sys, sbx.nsFd);
  }
  async leave(): Promise<void> {}
  ownedLinks(): string[] {
    return [];
  }
  endpointPresent(): boolean {
    return true;
  }
  networkPresent(): boolean {
    return true;
  }
  firewall() {
    return undefined;
  }
}
