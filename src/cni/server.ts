// The warm side of tsnet's CNI plugins. The executables an orchestrator runs are a
// small native client (native/src/cni-client.cc) that forwards its environment and
// stdin here over an abstract unix socket; this process runs the same runCni() the
// plugin bundles run, and answers with the exit code and stdout. It lives in the
// network and mount namespaces of the call that started it (the socket name, which
// the client derives, pins both), accepts only callers with its own uid, and exits
// after an idle period.
//
// Wire format (little-endian u32 lengths): request "TSC1", plugin name, entry count,
// each "KEY=VALUE", stdin; reply: exit code, stdout, stderr.
import { createServer, type Socket } from 'node:net';
import { nativeAddon } from '../system/real/addon.js';
import { runCni, type CniPlugin } from './skel.js';

export interface CniRequest {
  plugin: string;
  env: Record<string, string>;
  stdin: string;
}

export function decodeRequest(buf: Buffer): CniRequest {
  let off = 0;
  const u32 = () => {
    if (off + 4 > buf.length) throw new Error('truncated request');
    const v = buf.readUInt32LE(off);
    off += 4;
    return v;
  };
  const bytes = () => {
    const n = u32();
    if (off + n > buf.length) throw new Error('truncated request');
    const s = buf.toString('utf8', off, off + n);
    off += n;
    return s;
  };
  if (buf.toString('latin1', 0, 4) !== 'TSC1') throw new Error('not a tsnet CNI request');
  off = 4;
  const plugin = bytes();
  const env: Record<string, string> = {};
  for (let i = u32(); i > 0; i--) {
    const e = bytes();
    const eq = e.indexOf('=');
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  const stdin = bytes();
  if (off !== buf.length) throw new Error('trailing bytes after the request');
  return { plugin, env, stdin };
}

export function encodeReply(code: number, stdout: string, stderr = ''): Buffer {
  const out = Buffer.from(stdout);
  const err = Buffer.from(stderr);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(code, 0);
  head.writeUInt32LE(out.length, 4);
  const errLen = Buffer.alloc(4);
  errLen.writeUInt32LE(err.length, 0);
  return Buffer.concat([head, out, errLen, err]);
}

export interface CniServerOptions {
  /** The abstract socket name (without the leading NUL), as the client computed it. */
  name: string;
  /** Plugin factories by executable name (tsnet-bridge, ...), built on first use. */
  plugins: Record<string, () => CniPlugin>;
  idleMs: number;
}

/** Serves until idle; resolves when it stops. Rejects if the name is taken (another server won). */
export function serveCni(opts: CniServerOptions): Promise<void> {
  const built = new Map<string, CniPlugin>();
  const uid = process.getuid?.() ?? 0;
  let active = 0;
  let idle: NodeJS.Timeout | undefined;
  return new Promise((resolve, reject) => {
    // allowHalfOpen: the client shuts its side down after the request and waits for the reply.
    const server = createServer({ allowHalfOpen: true }, (sock: Socket) => {
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (fd === undefined || fd < 0 || nativeAddon().peerUid(fd) !== uid) {
        sock.destroy();
        return;
      }
      active++;
      if (idle) clearTimeout(idle);
      // 'close' comes once however the connection ends (a client may die mid-request).
      sock.once('close', () => {
        if (--active === 0) armIdle();
      });
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('error', () => undefined);
      sock.on('end', () => {
        void (async () => {
          try {
            const req = decodeRequest(Buffer.concat(chunks));
            const make = opts.plugins[req.plugin];
            if (!make) throw new Error(`unknown plugin ${req.plugin}`);
            let plugin = built.get(req.plugin);
            if (!plugin) built.set(req.plugin, (plugin = make()));
            const { stdout, code } = await runCni(plugin, { env: req.env, stdin: req.stdin });
            sock.end(encodeReply(code, stdout));
          } catch {
            sock.destroy(); // the client runs the call itself
          }
        })();
      });
    });
    const armIdle = () => {
      idle = setTimeout(() => server.close(() => resolve()), opts.idleMs);
    };
    server.on('error', reject);
    server.listen(`\0${opts.name}`, armIdle);
  });
}
