// The null driver: the sandbox keeps only its loopback interface (up).
import type { DriverContext, NetworkDriver, OpenSandbox } from '../../src/driverapi/driver.js';
import type { EndpointRecord, NetworkRecord } from '../../src/controller/model.js';
import { ensureLoopbackUp } from '../common.js';

export class NullDriver implements NetworkDriver {
  readonly type = 'null';
  readonly userCreatable = false;
  plan() {
    return { options: {} };
  }
  async ensureNetwork(): Promise<void> {}
  async deleteNetwork(): Promise<void> {}
  async join(_net: NetworkRecord, _ep: EndpointRecord, sbx: OpenSandbox, ctx: DriverContext): Promise<void> {
    await ensureLoopbackUp(sbx.nsFd, ctx);
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
