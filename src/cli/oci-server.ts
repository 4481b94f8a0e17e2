// The warm side of the native tsnet-runc (native/runtime/client.c): one Node
// process per state root, listening on ROOT/.tsnet-runc.sock (0600), that runs
// each call's command line as `tsnet runtime` would and answers in frames: output,
// the exit code, or a plan for the client to run itself (create and exec, whose
// processes must be the caller's children). It serves only callers of its own uid
// (SO_PEERCRED), exits after an idle period (TSNET_RUNC_IDLE seconds, default 300),
// and steps aside (telling clients to run in Node) once its code on disk changes.
import { createServer, connect, type Socket } from 'node:net';
import { chmodSync, closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeAddon } from '../system/real/addon.js';
import { HANDED_OFF, type HelperRun, type Helpers } from '../runtime/oci/runtime.js';
import { ociMain } from './oci.js';

export const SOCKET_NAME = '.tsnet-runc.sock';

function frame(type: string, body: string | Buffer): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32LE(b.length, 1);
  return Buffer.concat([h, b]);
}

/**
 * The create helper in the client: the plan goes out as a 'p' frame, then the
 * socket carries the helper's sync lines; "exited N" (run in the foreground) ends it.
 */
function remoteHelpers(sock: Socket, lines: LineQueue): Helpers {
  return {
    create(_path, text, o): HelperRun {
      sock.write(frame('p', text));
      let exited!: (code: number) => void;
      const done = new Promise<number>((r) => (exited = r));
      lines.onExited = exited;
      lines.onCreated = o.foreground ? undefined : () => exited(0);
      sock.once('close', () => exited(255));
      // kill: the client's helper, waiting for "go", takes any other line as the end (later, the
      // container's death ends it); then the client reads our answer.
      return { lines, send: (l) => sock.write(l), exited: done, kill: () => sock.write('abort\n') };
    },
    async exec(_path, text) {
      sock.write(frame('q', text));
      return HANDED_OFF;
    },
  };
}

/** The client's lines after a plan: next() for the create protocol, "exited N" and "created" noticed on the way. */
class LineQueue {
  private buf = '';
  private ended = false;
  private waiting: Array<() => void> = [];
  onExited?: (code: number) => void;
  onCreated?: () => void;
  push(d: string): void {
    this.buf += d;
    this.wake();
    this.scanExited();
  }
  end(): void {
    this.ended = true;
    this.wake();
  }
  private wake(): void {
    this.waiting.splice(0).forEach((w) => w());
  }
  private scanExited(): void {
    // An exit may come while no one reads lines (the foreground container ran).
    const m = /^exited (\d+)\n/.exec(this.buf);
    if (m) {
      this.buf = this.buf.slice(m[0].length);
      this.onExited?.(Number(m[1]));
    }
  }
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const l = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (l.startsWith('created ')) queueMicrotask(() => this.onCreated?.());
        this.scanExited();
        return l;
      }
      if (this.ended) return undefined;
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }
}

async function handle(sock: Socket): Promise<void> {
  let head = Buffer.alloc(0);
  const lines = new LineQueue();
  let request: Buffer | undefined;
  const got = new Promise<Buffer>((resolve, reject) => {
    sock.on('data', (d: Buffer) => {
      if (request) return lines.push(d.toString('utf8'));
      head = Buffer.concat([head, d]);
      if (head.length < 4) return;
      const len = head.readUInt32LE(0);
      if (len > 1 << 20) return reject(new Error('request too large'));
      if (head.length < 4 + len) return;
      request = head.subarray(4, 4 + len);
      const rest = head.subarray(4 + len);
      if (rest.length) lines.push(rest.toString('utf8'));
      resolve(request);
    });
    sock.on('end', () => lines.end());
    sock.on('close', () => {
      lines.end();
      reject(new Error('closed'));
    });
  });
  sock.on('error', () => undefined);
  const req = await got;
  const parts = req.toString('utf8').split('\0');
  parts.pop(); // after the last NUL
  const [cwd, ...argv] = parts;
  const io = { out: (t: string) => sock.write(frame('o', `${t}\n`)), err: (t: string) => sock.write(frame('e', `${t}\n`)) };
  const code = await ociMain(argv, io, { cwd: cwd || '/', remote: true }, remoteHelpers(sock, lines));
  if (code !== HANDED_OFF) sock.write(frame('x', String(code)));
  sock.end();
}

/** Serves ROOT's native clients until idle; resolves with 0 (or 1 when another server holds the socket). */
export async function serveOci(root: string): Promise<number> {
  const idleMs = (Number(process.env.TSNET_RUNC_IDLE) || 300) * 1000;
  mkdirSync(root, { recursive: true, mode: 0o711 });
  const path = join(root, SOCKET_NAME);
  // One server per root: the lock, held for our life, settles a race of two clients starting one each.
  const lock = openSync(join(root, '.tsnet-runc.lock'), 'a', 0o600);
  if (!nativeAddon().flock(lock, 'ex', true)) {
    closeSync(lock);
    return 1;
  }
  // Another server answering there (one from before the lock): it serves.
  const taken = await new Promise<boolean>((r) => {
    const c = connect(path, () => {
      c.destroy();
      r(true);
    });
    c.on('error', () => r(false));
  });
  if (taken) return 1;
  try {
    unlinkSync(path);
  } catch {
    /* none */
  }
  const code = fileURLToPath(import.meta.url);
  const born = statSync(code).mtimeMs;
  const uid = process.getuid?.() ?? 0;
  let active = 0;
  let idle: NodeJS.Timeout | undefined;
  return new Promise<number>((resolve) => {
    const stop = () => server.close(() => resolve(0));
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => active === 0 && stop(), idleMs);
    };
    const server = createServer((sock) => {
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (fd === undefined || fd < 0 || nativeAddon().peerUid(fd) !== uid) {
        sock.destroy();
        return;
      }
      let stale = false;
      try {
        stale = statSync(code).mtimeMs !== born;
      } catch {
        stale = true;
      }
      if (stale) {
        // Newer code on disk: this call runs in Node, and we go.
        sock.end(frame('f', ''));
        stop();
        return;
      }
      active++;
      if (idle) clearTimeout(idle);
      handle(sock)
        .catch(() => sock.destroy())
        .finally(() => {
          active--;
          arm();
        });
    });
    server.on('error', () => resolve(1));
    server.listen(path, () => {
      chmodSync(path, 0o600);
      arm();
    });
  });
}
