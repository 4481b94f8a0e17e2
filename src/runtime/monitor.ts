// The parent side of tsnet-monitor: starting one and reading its sync pipe, and
// attaching to a running container's stdio through the monitor's socket.
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { TsnetError } from '../errors.js';

/** The container's process could not be started; exitCode is Docker's (125 setup, 126 cannot execute, 127 not found). */
export class ContainerStartError extends TsnetError {
  constructor(readonly exitCode: number, message: string) {
    super(exitCode === 127 || exitCode === 126 ? 'NOT_FOUND' : 'INTERNAL', message);
  }
}

export interface Started {
  monitorPid: number;
  pid: number;
}

/**
 * Starts `tsnet-monitor run PLAN` detached (its own session; it outlives us) and
 * waits for "pid N" (onMonitor is told its pid first, onPid the container's, before
 * the process execs) and then "started", or "error CODE MESSAGE".
 */
export function launchMonitor(bin: string, planPath: string, hooks: { onMonitor?: (pid: number) => void; onPid?: (pid: number) => Promise<void> } = {}): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['run', planPath], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    const sync = child.stdio[3] as Readable;
    let pid = 0;
    let buf = '';
    let settled = false;
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      sync.destroy();
      child.unref();
      if (err) reject(err);
      else resolve({ monitorPid: child.pid!, pid });
    };
    child.on('error', (err) => done(new TsnetError('UNAVAILABLE', `cannot start ${bin}: ${err.message} (run npm run build)`)));
    if (child.pid) hooks.onMonitor?.(child.pid);
    sync.setEncoding('utf8');
    sync.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (l.startsWith('pid ')) {
          pid = Number(l.slice(4));
          // The process waits (before exec) until this resolves: an attach client connects here.
          (hooks.onPid ? hooks.onPid(pid) : Promise.resolve()).catch((err) => done(err));
        } else if (l === 'started') {
          done();
        } else if (l.startsWith('error ')) {
          const m = /^error (\d+) (.*)$/.exec(l);
          done(new ContainerStartError(m ? Number(m[1]) : 125, m ? m[2]! : l));
        }
      }
    });
    sync.on('close', () => done(new ContainerStartError(125, 'the container monitor exited before the container started')));
  });
}

export type AttachEvent = { type: 'stdout' | 'stderr'; data: Buffer } | { type: 'exit'; code: number };

/** A connection to a monitor's attach socket: output and the exit code in, stdin and resizes out. */
export class AttachClient {
  private buf: Buffer = Buffer.alloc(0);
  private exited = false;
  private constructor(private readonly sock: Socket, private readonly onEvent: (e: AttachEvent) => void, onClose: () => void) {
    sock.on('data', (d: Buffer) => this.parse(d));
    sock.on('close', onClose);
    sock.on('error', () => {
      /* close follows */
    });
  }

  static open(path: string, onEvent: (e: AttachEvent) => void, onClose: () => void): Promise<AttachClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => resolve(new AttachClient(sock, onEvent, onClose)));
      sock.once('error', (err) => reject(new TsnetError('UNAVAILABLE', `cannot attach: ${err.message}`)));
    });
  }

  private parse(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) break;
      const type = this.buf[0]!;
      const data = this.buf.subarray(5, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      if (type === 1 || type === 2) this.onEvent({ type: type === 1 ? 'stdout' : 'stderr', data: Buffer.from(data) });
      else if (type === 3) {
        this.exited = true;
        this.onEvent({ type: 'exit', code: Number(data.toString()) });
        this.sock.end();
      }
    }
  }

  private frame(type: number, data: Buffer): void {
    // After the exit frame the monitor only waits for us to go: nothing more to say.
    if (this.exited || this.sock.destroyed) return;
    for (let off = 0; off < data.length || (off === 0 && data.length === 0); off += 65536) {
      const piece = data.subarray(off, off + 65536);
      const h = Buffer.alloc(5);
      h[0] = type;
      h.writeUInt32BE(piece.length, 1);
      this.sock.write(Buffer.concat([h, piece]));
      if (data.length === 0) break;
    }
  }

  write(data: Buffer): void {
    this.frame(0, data);
  }
  closeStdin(): void {
    this.frame(4, Buffer.alloc(0));
  }
  resize(rows: number, cols: number): void {
    this.frame(5, Buffer.from(`${rows} ${cols}`));
  }
  close(): void {
    this.sock.destroy();
  }
}
