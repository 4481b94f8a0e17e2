// The userland proxy: one process serving every published port of a host for
// what NAT cannot (IPv6 loopback, --firewall none), and holding every published
// port so no other program can take it. TCP connections are piped to the target;
// UDP is relayed per client address with an idle timeout.
import net from 'node:net';
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import type { RelayAddon } from '../../system/real/addon.js';
import type { Logger } from '../../log.js';
import { bindingKey, type ProxyBinding, type ProxyLost, type ProxyReply, type ProxyRequest } from './protocol.js';

interface Held {
  binding: ProxyBinding;
  fd: number;
  server?: net.Server;
  /** Native splice relay listener id. */
  spliceId?: number;
  udp?: dgram.Socket;
  flows?: Map<string, { sock: dgram.Socket; timer: NodeJS.Timeout; ready: boolean; queue: Buffer[] }>;
}

export interface ProxyOptions {
  udpIdleMs: number;
  /** TCP relay: 'splice' (native threads, zero-copy) or 'streams' (Node streams). */
  tcp: 'splice' | 'streams';
  log: Pick<Logger, 'info' | 'warn'>;
}

export class UserlandProxy {
  private readonly held = new Map<string, Held>();
  /** Wanted but not bound (another program has the port): retried by retryLost(). */
  private readonly lost = new Map<string, ProxyLost>();
  private active = false;
  constructor(
    private readonly addon: RelayAddon,
    private readonly opts: ProxyOptions,
  ) {}

  /** How many bindings it is asked to hold (held or lost). */
  get size(): number {
    return this.held.size + this.lost.size;
  }

  /** What it should hold: persisted by main.ts, so a restarted proxy takes the same ports again. */
  wanted(): { bindings: ProxyBinding[]; activate: boolean } {
    return { bindings: [...this.held.values()].map((h) => h.binding).concat([...this.lost.values()].map((l) => l.binding)), activate: this.active };
  }

  private lostList(): ProxyLost[] {
    return [...this.lost.values()];
  }

  handle(req: ProxyRequest): ProxyReply {
    if (req.op === 'status') return { ok: this.lost.size === 0, pid: process.pid, bindings: this.held.size, errors: this.lostList(), rssBytes: process.memoryUsage().rss, tcp: this.opts.tcp };
    if (req.op !== 'sync') return { ok: false, pid: process.pid, error: `unknown op` };
    const want = new Map(req.bindings.map((b) => [bindingKey(b), b]));
    for (const [key, h] of this.held) if (!want.has(key)) this.release(key, h);
    for (const key of this.lost.keys()) if (!want.has(key)) this.lost.delete(key);
    for (const [key, b] of want) {
      const h = this.held.get(key);
      if (h) {
        // An endpoint keeps its addresses for life, so a held port's target never moves.
        if (h.binding.targetIP !== b.targetIP || h.binding.targetPort !== b.targetPort) this.opts.log.warn({ binding: key }, 'ignoring a new target for a binding already held');
        continue;
      }
      this.lost.delete(key);
      this.bind(key, b);
    }
    // Bind before rules, rules before serving: a sync without activate only holds new ports.
    this.active = req.activate;
    if (req.activate) for (const h of this.held.values()) this.activate(h);
    const errors = this.lostList();
    return { ok: errors.length === 0, pid: process.pid, errors, bindings: this.held.size };
  }

  private bind(key: string, b: ProxyBinding): boolean {
    try {
      const fd = this.addon.bindSocket(b.hostIP.includes(':') ? 6 : 4, b.proto === 'udp' ? 'udp' : 'tcp', b.hostIP, b.hostPort);
      this.held.set(key, { binding: b, fd });
      return true;
    } catch (err) {
      this.lost.set(key, { binding: b, code: (err as { code?: string }).code ?? 'EIO' });
      return false;
    }
  }

  /** Tries the lost bindings again; returns how many came back. */
  retryLost(): number {
    let back = 0;
    for (const [key, l] of [...this.lost]) {
      this.lost.delete(key);
      if (!this.bind(key, l.binding)) continue;
      back++;
      this.opts.log.info({ binding: key }, 'a lost binding is held again');
      if (this.active) this.activate(this.held.get(key)!);
    }
    return back;
  }

  private activate(h: Held): void {
    if (h.server || h.udp || h.spliceId !== undefined) return;
    if (h.binding.proto === 'udp') {
      const sock = dgram.createSocket({ type: h.binding.hostIP.includes(':') ? 'udp6' : 'udp4' });
      h.udp = sock;
      h.flows = new Map();
      sock.on('message', (msg, rinfo) => this.relayUdp(h, msg, rinfo));
      sock.on('error', (err) => this.opts.log.warn({ err, binding: bindingKey(h.binding) }, 'udp socket error'));
      sock.bind({ fd: h.fd } as dgram.BindOptions);
      return;
    }
    if (this.opts.tcp === 'splice') {
      h.spliceId = this.addon.spliceListen(h.fd, h.binding.targetIP, h.binding.targetPort, 1024);
      return;
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => this.pipeTcp(h, client));
    server.on('error', (err) => this.opts.log.warn({ err, binding: bindingKey(h.binding) }, 'tcp listener error'));
    server.listen({ fd: h.fd, backlog: 1024 });
    h.server = server;
  }

  private pipeTcp(h: Held, client: net.Socket): void {
    const up = net.connect({ host: h.binding.targetIP, port: h.binding.targetPort, allowHalfOpen: true });
    client.setNoDelay(true);
    up.setNoDelay(true);
    const done = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', done);
    up.on('error', done);
    client.on('close', () => up.end());
    up.on('close', () => client.end());
    client.pipe(up);
    up.pipe(client);
  }

  private relayUdp(h: Held, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}/${rinfo.port}`;
    let flow = h.flows!.get(key);
    if (!flow) {
      const sock = dgram.createSocket(h.binding.targetIP.includes(':') ? 'udp6' : 'udp4');
      const f = { sock, timer: setTimeout(() => this.dropFlow(h, key), this.opts.udpIdleMs), ready: false, queue: [] as Buffer[] };
      sock.on('message', (reply) => {
        f.timer.refresh();
        h.udp?.send(reply, rinfo.port, rinfo.address);
      });
      sock.on('error', () => this.dropFlow(h, key));
      sock.connect(h.binding.targetPort, h.binding.targetIP, () => {
        f.ready = true;
        for (const m of f.queue.splice(0)) sock.send(m);
      });
      h.flows!.set(key, f);
      flow = f;
    } else {
      flow.timer.refresh();
    }
    if (flow.ready) flow.sock.send(msg);
    else flow.queue.push(msg);
  }

  private dropFlow(h: Held, key: string): void {
    const f = h.flows?.get(key);
    if (!f) return;
    clearTimeout(f.timer);
    f.sock.close();
    h.flows!.delete(key);
  }

  private release(key: string, h: Held): void {
    this.held.delete(key);
    if (h.spliceId !== undefined) this.addon.spliceStop(h.spliceId); // its thread closes the socket
    else if (h.server) h.server.close();
    else if (h.udp) {
      for (const k of [...(h.flows?.keys() ?? [])]) this.dropFlow(h, k);
      h.udp.close();
    } else {
      try {
        closeSync(h.fd); // bound but never served
      } catch {
        /* already closed */
      }
    }
  }
}
