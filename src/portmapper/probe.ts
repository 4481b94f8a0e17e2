// Whether another program holds a host port: try to bind it (and let go at once).
import net from 'node:net';
import dgram from 'node:dgram';
import type { Proto } from './spec.js';

function tryTcp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' || err.code === 'EACCES'));
    srv.listen({ host, port, exclusive: true, ipv6Only: host.includes(':') }, () => srv.close(() => resolve(false)));
  });
}

function tryUdp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.close();
      resolve(err.code === 'EADDRINUSE' || err.code === 'EACCES');
    });
    sock.bind({ address: host, port, exclusive: true }, () => sock.close(() => resolve(false)));
  });
}

/**
 * True when some program has proto/hostIP/port. '' probes 0.0.0.0 and ::.
 * SCTP cannot be probed from Node: only tsnet's own table guards it.
 */
export async function portInUse(proto: Proto, hostIP: string, port: number): Promise<boolean> {
  if (proto === 'sctp') return false;
  const hosts = hostIP === '' ? ['0.0.0.0', '::'] : [hostIP];
  for (const h of hosts) {
    const busy = proto === 'tcp' ? await tryTcp(h, port) : await tryUdp(h, port);
    if (busy) return true;
  }
  return false;
}
