// The warm side of tsnet's CNI plugins. The executables an orchestrator runs are a
// small native client (native/src/cni-client.cc) that forwards its environment and
// stdin here over a unix socket in RUN/cni (a directory only root can write);
// this process runs the same runCni() the plugin bundles run, and answers with the
// exit code and stdout. It lives in the network and mount namespaces of the call
// that started it (the socket's name, which the client derives, pins both),
// accepts only callers with its own uid, and exits after an idle period. One
// server per name: it holds NAME.lock for its whole life.
//
// Wire format (little-endian u32 lengths): request "TSC1", plugin name, entry count,
// each "KEY=VALUE", stdin; reply: exit code, stdout, stderr.
import { chmodSync, closeSync, fstatSync, lstatSync, mkdirSync, openSync, rmSync, statSync, constants as fsc } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
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
  /** The socket's path (RUN/cni/HASH.sock), as the client computed it. */
  path: string;
  /** Plugin factories by executable name (tsnet-bridge, ...), built on first use. */
  plugins: Record<string, () => CniPlugin>;
  idleMs: number;
}

/** Refuses a directory another user could add entries to (the client refuses it too). */
export function checkPrivateDir(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || (st.uid !== 0 && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new Error(`${dir} is not a directory that only its owner (root or uid ${uid}) can write to: not serving there`);
  }
}

/** mkdir -p where the last component is private (0700) and the others 0755, never loosening existing ones. */
function ensureSocketDir(dir: string): void {
  const parent = dirname(dir);
  try {
    lstatSync(parent);
  } catch {
    mkdirSync(parent, { recursive: true, mode: 0o755 });
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700); // the umask may have taken bits, never added them
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  checkPrivateDir(parent);
  checkPrivateDir(dir);
}

/**
 * Serves until idle; resolves when it stops, or at once (false) when another
 * server holds the name's lock. Rejects when the directory is not private.
 */
export async function serveCni(opts: CniServerOptions): Promise<boolean> {
  ensureSocketDir(dirname(opts.path));
  const lockPath = `${opts.path}.lock`;
  const addon = nativeAddon();
  const lockFd = openSync(lockPath, fsc.O_CREAT | fsc.O_RDWR | fsc.O_NOFOLLOW, 0o600);
  const sameFile = () => {
    try {
      const a = fstatSync(lockFd);
      const b = statSync(lockPath);
      return a.ino === b.ino && a.dev === b.dev;
    } catch {
      return false;
    }
  };
  if (!addon.flock(lockFd, 'ex', true) || !sameFile()) {
    closeSync(lockFd);
    return false; // another server lives (or just left): it serves, or the next call starts one
  }
  const built = new Map<string, CniPlugin>();
  const uid = process.getuid?.() ?? 0;
  let active = 0;
  let idle: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      // allowHalfOpen: the client shuts its side down after the request and waits for the reply.
      const server = createServer({ allowHalfOpen: true }, (sock: Socket) => {
        const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
        if (fd === undefined || fd < 0 || addon.peerUid(fd) !== uid) {
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
        sock.on('error', () => undefined); // a client that went away: nothing to answer
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
        idle = setTimeout(() => {
          // Unlink first: a client arriving now starts a new server, which waits for nothing (our lock is gone with us).
          rmSync(opts.path, { force: true });
          server.close(() => resolve());
        }, opts.idleMs);
      };
      server.on('error', reject);
      // We hold the name's lock: a socket file there is a dead server's.
      rmSync(opts.path, { force: true });
      server.listen(opts.path, () => {
        chmodSync(opts.path, 0o600);
        armIdle();
      });
    });
  } finally {
    rmSync(lockPath, { force: true });
    closeSync(lockFd);
  }
  return true;
}
