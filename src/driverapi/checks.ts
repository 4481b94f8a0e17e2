// Join rules several drivers share.
import { ConflictError, InvalidConfigError } from '../errors.js';
import type { NetworkRecord } from '../controller/model.js';
import type { EndpointRequest, JoinContext } from './driver.js';

/** A sandbox in the host's own namespace joins only the host network. */
export function refuseHostSandbox(_net: NetworkRecord, join: JoinContext): void {
  if (join.sandbox.kind === 'host') throw new ConflictError(`sandbox ${join.sandbox.name} uses the host's network namespace: it cannot be connected to other networks`);
}

/** Addresses, interface names and published ports belong to networks with their own interfaces. */
export function refuseBridgeOptions(net: NetworkRecord, req: EndpointRequest): void {
  if (req.ip || req.ip6 || req.ifname || req.publishing) {
    throw new InvalidConfigError(`--ip, --ip6, --ifname and -p/-P apply to bridge networks only (network ${net.name} uses driver ${net.driver})`);
  }
}
