// tsnet's side of the userland proxy: start it when needed (under the native
// keeper, detached, so it outlives the CLI and is started again if it dies), send
// it the complete set of bindings to hold, and ask it what it could not hold.
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsnetError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { repoFile } from '../../system/real/addon.js';
import type { ProxyBinding, ProxyLost, ProxyReply, ProxyRequest } from './protocol.js';

export interface ProxyPort {
  /**
   * Makes the proxy hold exactly `bindings` (starting it if needed); activate =
   * serve them. Returns the bindings it should hold and cannot (another program
   * has the port): the caller decides whether that fails its command.
   */
  sync(bindings: ProxyBinding[], activate: boolean): Promise<ProxyLost[]>;
  /** Starts the proxy if it should run and does not (cheap when it runs: a pid check). */
  ensureRunning(): void;
  /** What the running proxy cannot hold now ([] when none runs). */
  lost(): Promise<ProxyLost[]>;
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

  /** Whether the proxy process of this run directory is alive (its pid file names a live proxy). */
  alive(): boolean {
    try {
      const pid = Number(readFileSync(`${this.socketPath}.pid`, 'utf8'));
      return pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(this.socketPath);
    } catch {
      return false;
    }
  }

  private start(): void {
    mkdirSync(this.runDir, { recursive: true, mode: 0o755 });
    const main = repoFile(join('dist', 'src', 'portmapper', 'proxy', 'main.js'));
    if (!main) throw new TsnetError('INTERNAL', `cannot find the userland proxy's entry point (dist/src/portmapper/proxy/main.js) near ${fileURLToPath(import.meta.url)}`);
    const keeper = repoFile(join('native', 'build', 'Release', 'tsnet-proxy-keeper'));
    const logFd = openSync(join(this.runDir, 'proxy.log'), 'a');
    const proxy = [process.execPath, main, '--socket', this.socketPath];
    // The keeper starts it again if it dies; without a built keeper it runs alone.
    const argv = keeper ? [keeper, join(this.runDir, 'proxy.keeper.pid'), ...proxy] : proxy;
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', logFd, logFd], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    child.unref();
    this.log.debug({ pid: child.pid, keeper: Boolean(keeper) }, 'userland proxy started');
  }

  ensureRunning(): void {
    // It should run when it was holding something (its bindings file outlives a kill -9).
    if (!this.alive() && existsSync(`${this.socketPath}.bindings.json`)) {
      this.log.info('the userland proxy is not running: starting it (it takes back its ports)');
      this.start();
    }
  }

  async lost(): Promise<ProxyLost[]> {
    try {
      return (await request(this.socketPath, { op: 'status' })).errors ?? [];
    } catch {
      return [];
    }
  }

  async sync(bindings: ProxyBinding[], activate: boolean): Promise<ProxyLost[]> {
    const req: ProxyRequest = { op: 'sync', bindings, activate };
    let reply: ProxyReply | undefined;
    try {
      reply = await request(this.socketPath, req);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
      if (!bindings.length) return []; // nothing to hold and nobody holding: done
      if (!this.alive()) this.start(); // one may be starting already (a reader noticed it was gone)
      for (let i = 0; i < 100 && !reply; i++) {
        await new Promise((r) => setTimeout(r, 20));
        reply = await request(this.socketPath, req).catch(() => undefined);
      }
      if (!reply) throw new TsnetError('INTERNAL', `the userland proxy did not start (see ${join(this.runDir, 'proxy.log')})`);
    }
    if (reply.error) throw new TsnetError('INTERNAL', `userland proxy: ${reply.error}`);
    return reply.errors ?? [];
  }
}
