// The tsnet CNI server: started in the background by the plugin client
// (native/src/cni-client.cc) when none answers; serves all four plugins warm.
import { serveCni } from '../src/cni/server.js';
import { composeCni } from '../src/compose/cni.js';
import { entryLogger } from '../src/compose/logger.js';

const path = process.argv[2];
if (!path || !path.startsWith('/')) {
  process.stderr.write('usage: tsnet-cni-server SOCKET-PATH (started by the tsnet CNI plugins)\n');
  process.exit(2);
}
const log = entryLogger('tsnet-cni-server', process.env.TSNET_LOG_LEVEL, 'silent');
const idleSeconds = Number(process.env.TSNET_CNI_IDLE ?? 300);
try {
  // false: another server holds the name; it serves.
  await serveCni({ path, idleMs: (Number.isFinite(idleSeconds) && idleSeconds > 0 ? idleSeconds : 300) * 1000, plugins: composeCni(log) });
} catch (err) {
  // Its stdio is /dev/null: the log (TSNET_LOG_LEVEL) is the only place this can go; callers run the call themselves.
  log.error({ err }, 'the CNI server cannot serve');
  process.exitCode = 1;
}
process.exit();
