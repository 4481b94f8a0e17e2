// The host driver: the endpoint uses the host's own network namespace; nothing
// is created or removed.
import type { NetworkDriver } from '../../src/driverapi/driver.js';

export class HostDriver implements NetworkDriver {
  readonly type = 'host';
  readonly userCreatable = false;
  plan() {
    return { options: {} };
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
