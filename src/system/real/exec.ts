// The one place tsnet runs external programs (iptables-restore, nft, ...).
import { statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { DEFAULT_PATH, findCommand, type ExecResult, type ExecRunner } from '../kernel.js';
import { CommandError, SyscallError } from '../../errors.js';
import type { Logger } from '../../log.js';

export class RealExec implements ExecRunner {
  constructor(private readonly log: Logger) {}

  run(argv: readonly string[], opts: { input?: string; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
      const out: Buffer[] = [];
      const errs: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => errs.push(b));
      child.on('error', (err: NodeJS.ErrnoException) => {
        reject(
          err.code === 'ENOENT'
            ? new SyscallError('exec', 'ENOENT', `${argv[0]} not found: install it (Debian package ${packageOf(argv[0]!)})`, { cause: err })
            : new SyscallError('exec', err.code ?? 'EIO', `${argv[0]}: ${err.message}`, { cause: err }),
        );
      });
      child.on('close', (code) => {
        const res = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errs).toString('utf8'), code: code ?? -1 };
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        this.log.debug({ argv, code, ms: Math.round(ms * 100) / 100, input: opts.input }, 'exec');
        if (code !== 0 && !opts.allowFail) reject(new CommandError(argv, code, res.stderr));
        else resolve(res);
      });
      child.stdin.on('error', () => undefined); // the child may exit before reading everything
      child.stdin.end(opts.input ?? '');
    });
  }

  which(cmd: string, dirs: string | readonly string[] = process.env.PATH ?? DEFAULT_PATH): string | undefined {
    return findCommand(cmd, dirs, (p) => statSync(p, { throwIfNoEntry: false })?.isFile() === true);
  }
}

function packageOf(cmd: string): string {
  if (cmd.startsWith('ip6tables') || cmd.startsWith('iptables')) return 'iptables';
  if (cmd === 'nft') return 'nftables';
  if (cmd === 'ip' || cmd === 'bridge') return 'iproute2';
  return cmd;
}
