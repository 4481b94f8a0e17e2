// tsnet-proxy: the userland proxy process. Started (detached) by tsnet when some
// port is published; listens for control requests on a unix socket; exits by
// itself once it holds nothing.
//   node dist/src/portmapper/proxy/main.js --socket PATH [--udp-idle-ms N]
import net from 'node:net';
import { rmSync, writeFileSync } from 'node:fs';
import { nativeAddon } from '../../system/real/addon.js';
import { UserlandProxy } from './server.js';
import type { ProxyRequest } from './protocol.js';

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const socketPath = arg('--socket');
if (!socketPath) {
  process.stderr.write('usage: tsnet-proxy --socket PATH [--udp-idle-ms N]\n');
  process.exit(2);
}
const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} tsnet-proxy[${process.pid}]: ${msg}\n`);
// TCP through the native splice relay unless TSNET_PROXY_TCP=streams (see bench/RESULTS.md).
const tcp = process.env.TSNET_PROXY_TCP === 'streams' ? 'streams' : 'splice';
const proxy = new UserlandProxy(nativeAddon(), { udpIdleMs: Number(arg('--udp-idle-ms') ?? 30000), tcp, log });

rmSync(socketPath, { force: true });
const control = net.createServer((conn) => {
  let buf = '';
  conn.on('data', (d) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let reply;
      try {
        reply = proxy.handle(JSON.parse(line) as ProxyRequest);
      } catch (err) {
        reply = { ok: false, pid: process.pid, error: (err as Error).message };
      }
      conn.write(`${JSON.stringify(reply)}\n`);
      if (proxy.size === 0) {
        // Nothing left to hold: answer, then go.
        conn.end(() => shutdown());
      }
    }
  });
  conn.on('error', () => undefined);
});
control.listen(socketPath, () => {
  writeFileSync(`${socketPath}.pid`, String(process.pid));
  log(`listening on ${socketPath} (tcp relay: ${tcp})`);
});

function shutdown(): void {
  control.close();
  rmSync(socketPath!, { force: true });
  rmSync(`${socketPath}.pid`, { force: true });
  log('exiting: no bindings left');
  process.exit(0);
}
process.on('SIGTERM', shutdown);
