// Tiny servers and clients run inside namespaces with `nsenter --net`: a TCP and a
// UDP server that answer with the peer's address and their own port, and clients.
import { spawn, type ChildProcess } from 'node:child_process';
import { runSync } from './harness.js';

const SERVER = `
const net = require('net'), dgram = require('dgram');
const [proto, ...ports] = process.argv.slice(1);
let ready = 0;
const up = () => { if (++ready === ports.length) process.stdout.write('ready\\n'); };
for (const p of ports.map(Number)) {
  if (proto === 'tcp') net.createServer((s) => s.end(s.remoteAddress.replace(/^::ffff:/, '') + ' ' + p + '\\n')).listen(p, up);
  else { const u = dgram.createSocket('udp6'); u.on('message', (m, r) => u.send(r.address.replace(/^::ffff:/, '') + ' ' + p, r.port, r.address)); u.bind(p, up); }
}`;

const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [proto, host, port] = process.argv.slice(1);
const done = (t) => { process.stdout.write(t.trim()); process.exit(0); };
setTimeout(() => { process.stdout.write('timeout'); process.exit(2); }, Number(process.env.PROBE_TIMEOUT_MS || 1500));
if (proto === 'tcp') { const s = net.connect(Number(port), host); s.on('data', (d) => done(d.toString())); s.on('error', (e) => { process.stdout.write('error ' + e.code); process.exit(1); }); }
else { const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4'); u.on('message', (m) => done(m.toString())); u.send('x', Number(port), host); }`;

/** Starts servers on ports inside the namespace; resolves once they listen. */
export async function startServer(nsPath: string, proto: 'tcp' | 'udp', ports: number[]): Promise<ChildProcess> {
  const child = spawn('nsenter', [`--net=${nsPath}`, '--', process.execPath, '-e', SERVER, proto, ...ports.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start')), 5000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error('server exited')));
  });
  child.removeAllListeners('exit');
  return child;
}

/** "peer-address server-port" on success, "timeout" or "error CODE" otherwise. */
export function request(nsPath: string, proto: 'tcp' | 'udp', host: string, port: number): string {
  return runSync(['nsenter', `--net=${nsPath}`, '--', process.execPath, '-e', CLIENT, proto, host, String(port)]).stdout.trim();
}
