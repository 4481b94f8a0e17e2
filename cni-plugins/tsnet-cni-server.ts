// The tsnet CNI server: started in the background by the plugin client
// (native/src/cni-client.cc) when none answers; serves all four plugins warm.
import { serveCni } from '../src/cni/server.js';
import { bridgePlugin } from '../src/cni/bridge.js';
import { ipamPlugin } from '../src/cni/ipam.js';
import { loopbackPlugin } from '../src/cni/loopback.js';
import { portmapPlugin } from '../src/cni/portmap.js';
import { createRealSystem } from '../src/system/real/index.js';
import { createRootLogger, type LogLevel } from '../src/log.js';

const name = process.argv[2];
if (!name) {
  process.stderr.write('usage: tsnet-cni-server SOCKET-NAME (started by the tsnet CNI plugins)\n');
  process.exit(2);
}
const log = createRootLogger((process.env.TSNET_LOG_LEVEL as LogLevel) || 'silent', 'tsnet-cni-server');
let sys: ReturnType<typeof createRealSystem> | undefined;
const system = () => (sys ??= createRealSystem(log));
const idleSeconds = Number(process.env.TSNET_CNI_IDLE ?? 300);
try {
  await serveCni({
    name,
    idleMs: (Number.isFinite(idleSeconds) && idleSeconds > 0 ? idleSeconds : 300) * 1000,
    plugins: {
      'tsnet-bridge': () => bridgePlugin(system()),
      'tsnet-portmap': () => portmapPlugin(system()),
      'tsnet-loopback': () => loopbackPlugin(system()),
      'tsnet-ipam': () => ipamPlugin(),
    },
  });
} catch {
  // Another server bound the name first: it serves.
}
process.exit(0);
