// The host driver: the endpoint uses the host's own network namespace; nothing
// is created or removed.
import type { EndpointPlan, EndpointRequest, JoinContext, NetworkDriver } from '../../src/driverapi/driver.js';
import type { NetworkRecord } from '../../src/controller/model.js';
import { refuseBridgeOptions } from '../../src/driverapi/checks.js';
import { ConflictError } from '../../src/errors.js';

export class HostDriver implements NetworkDriver {
  readonly type = 'host';
  readonly userCreatable = false;
  readonly predefined = { name: 'host', options: {} };
  plan() {
    return { options: {} };
  }
  checkJoin(net: NetworkRecord, join: JoinContext, req: EndpointRequest): void {
    if (join.sandbox.kind !== 'host') throw new ConflictError('only sandboxes created with --network host can use the host network');
    refuseBridgeOptions(net, req);
  }
  planEndpoint(): EndpointPlan {
    return { ifname: '', defaultHostIP: '' };
  }
  async ensureNetwork(): Promise<void> {}
  async deleteNetwork(): Promise<void> {}
  async join(): Promise<void> {}
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
