// tsnet-proxy: the userland proxy process. Started by tsnet (through the native
// tsnet-proxy-keeper, which starts it again if it dies) when some port is
// published; listens for control requests on a unix socket; exits by itself once
// it holds nothing.
//   node dist/src/portmapper/proxy/main.js --socket PATH [--udp-idle-ms N]
//
// One proxy per run directory: it holds PATH.lock for its whole life (a second one
// exits with status 3). What it is asked to hold is kept in PATH.bindings.json, so
// a proxy started again after a crash or a kill takes the same ports back at once,
// before any tsnet command runs. Ports another program took meanwhile are reported
// as lost (status, every sync reply) and tried again every few seconds.
import net from 'node:net';
import { closeSync, fstatSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, constants as fsc } from 'node:fs';
import { nativeAddon } from '../../system/real/addon.js';
import { composeProxy, proxySettings } from '../../compose/proxy.js';
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
const LOST_RETRY_MS = Number(process.env.TSNET_PROXY_RETRY_MS ?? 2000);

// One proxy per socket: the lock is held until this process ends.
const lockPath = `${socketPath}.lock`;
const lockFd = openSync(lockPath, fsc.O_CREAT | fsc.O_RDWR | fsc.O_NOFOLLOW, 0o600);
const sameLock = () => {
  try {
    return fstatSync(lockFd).ino === statSync(lockPath).ino;
  } catch {
    return false;
  }
};
if (!nativeAddon().flock(lockFd, 'ex', true) || !sameLock()) {
  closeSync(lockFd);
  process.exit(3); // another proxy serves this run directory
}

// TCP through the native splice relay unless TSNET_PROXY_TCP=streams (see bench/RESULTS.md).
const settings = proxySettings(process.env, arg('--udp-idle-ms'));
const { proxy, log } = composeProxy(settings);

const stateFile = `${socketPath}.bindings.json`;
function persist(): void {
  const tmp = `${stateFile}.tmp`;
  writeFileSync(tmp, JSON.stringify(proxy.wanted()));
  renameSync(tmp, stateFile);
}
// A restart (after a crash or kill -9) takes back what the last proxy held.
try {
  const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { bindings: unknown; activate: unknown };
  if (Array.isArray(saved.bindings) && saved.bindings.length) {
    const reply = proxy.handle({ op: 'sync', bindings: saved.bindings, activate: saved.activate === true });
    const lost = (reply.errors ?? []).map((e) => `${e.binding.hostIP}:${e.binding.hostPort}/${e.binding.proto} ${e.code}`);
    log.info({ held: reply.bindings, saved: saved.bindings.length, lost }, 'restarted: holding the saved bindings');
  }
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err, file: stateFile }, 'ignoring an unreadable bindings file');
}

setInterval(() => {
  if (proxy.retryLost()) persist();
}, LOST_RETRY_MS).unref();

rmSync(socketPath, { force: true }); // we hold the lock: a socket file there is a dead proxy's
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
        const req = JSON.parse(line) as ProxyRequest;
        reply = proxy.handle(req);
        if (req.op === 'sync') persist();
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
  conn.on('error', () => undefined); // a client that went away: nothing to answer
});
control.listen(socketPath, () => {
  writeFileSync(`${socketPath}.pid`, String(process.pid));
  log.info({ socket: socketPath, tcp: settings.tcp, udpIdleMs: settings.udpIdleMs }, 'listening');
  if (proxy.size === 0) setTimeout(() => proxy.size === 0 && shutdown(), 10_000).unref(); // started for nothing
});

function shutdown(): void {
  control.close();
  for (const f of [socketPath!, `${socketPath}.pid`, stateFile, lockPath]) rmSync(f, { force: true });
  log.info('exiting: no bindings left');
  process.exit(0);
}
process.on('SIGTERM', shutdown);
