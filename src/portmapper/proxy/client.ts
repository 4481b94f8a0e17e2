// tsnet's side of the userland proxy: start it when needed (detached, so it
// outlives the CLI), and send it the complete set of bindings to hold.
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PortInUseError, TsnetError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ProxyBinding, ProxyReply, ProxyRequest } from './protocol.js';
import { describe } from '../allocator.js';

export interface ProxyPort {
  /** Makes the proxy hold exactly `bindings` (starting it if needed); activate = serve them. */
  sync(bindings: ProxyBinding[], activate: boolean): Promise<void>;
}

function request(socketPath: string, req: ProxyRequest, timeoutMs = 5000): Promise<ProxyReply> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socketPath);
    let buf = '';
    const t = setTimeout(() => {
      c.destroy();
      reject(new TsnetError('INTERNAL', `userland proxy at ${socketPath} did not answer`));
    }, timeoutMs);
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        c.end();
        resolve(JSON.parse(buf.slice(0, nl)) as ProxyReply);
      }
    });
    c.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

export class ProxyClient implements ProxyPort {
  readonly socketPath: string;
  constructor(
    private readonly runDir: string,
    private readonly log: Logger,
  ) {
    this.socketPath = join(runDir, 'proxy.sock');
  }

  private start(): void {
    mkdirSync(this.runDir, { recursive: true });
    // This module runs from dist/src/portmapper/proxy, or bundled into dist/src/cli.
    const here = dirname(fileURLToPath(import.meta.url));
    const entry = join('portmapper', 'proxy', 'main.js');
    const main = [join(here, 'main.js'), join(here, '..', entry)].find((p) => p.endsWith(entry) && existsSync(p));
    if (!main) throw new TsnetError('INTERNAL', `cannot find the userland proxy's entry point (${entry}) near ${here}`);
    const logFd = openSync(join(this.runDir, 'proxy.log'), 'a');
    const child = spawn(process.execPath, [main, '--socket', this.socketPath], { detached: true, stdio: ['ignore', logFd, logFd], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    child.unref();
    this.log.debug({ pid: child.pid }, 'userland proxy started');
  }

  async sync(bindings: ProxyBinding[], activate: boolean): Promise<void> {
    const req: ProxyRequest = { op: 'sync', bindings, activate };
    let reply: ProxyReply | undefined;
    try {
      reply = await request(this.socketPath, req);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
      if (!bindings.length) return; // nothing to hold and nobody holding: done
      this.start();
      for (let i = 0; i < 100 && !reply; i++) {
        await new Promise((r) => setTimeout(r, 20));
        reply = await request(this.socketPath, req).catch(() => undefined);
      }
      if (!reply) throw new TsnetError('INTERNAL', `the userland proxy did not start (see ${join(this.runDir, 'proxy.log')})`);
    }
    if (reply.errors?.length) {
      const e = reply.errors[0]!;
      const what = describe({ proto: e.binding.proto, hostIP: e.binding.hostIP, hostPort: e.binding.hostPort });
      if (e.code === 'EADDRINUSE') throw new PortInUseError(`port ${what} is already in use by another program`);
      throw new TsnetError('SYSCALL', `the userland proxy cannot bind ${what}: ${e.code}`);
    }
    if (!reply.ok) throw new TsnetError('INTERNAL', `userland proxy: ${reply.error ?? 'failed'}`);
  }
}
