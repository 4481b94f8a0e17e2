// The embedded, transactional state store. State is one JSON document, replaced
// atomically (write to a temp file, rename). Writers serialise on an flock(2) of
// a lock file, so any number of tsnet processes (CLI, CNI plugins, the daemon)
// can act at once; readers need no lock because a rename is atomic.
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { nativeAddon } from '../system/real/addon.js';
import { TsnetError } from '../errors.js';
import type { Logger } from '../log.js';

export interface StoreTx<S> {
  /** The state as of lock time (or after the last write in this transaction). */
  readonly state: S;
  /** Persist the state now (used to record intent before touching the kernel). */
  write(next: S): void;
}

export class Store<S> {
  private readonly stateFile: string;
  private readonly lockFile: string;

  constructor(
    readonly dir: string,
    private readonly initial: () => S,
    private readonly log: Logger,
  ) {
    this.stateFile = join(dir, 'state.json');
    this.lockFile = join(dir, 'lock');
  }

  /** Lock-free snapshot read (returns the initial state when nothing was written yet). */
  read(): S {
    try {
      return JSON.parse(readFileSync(this.stateFile, 'utf8')) as S;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.initial();
      throw new TsnetError('INTERNAL', `state file ${this.stateFile} is unreadable: ${(err as Error).message}`, { cause: err });
    }
  }

  private writeAtomic(state: S): void {
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
    renameSync(tmp, this.stateFile);
  }

  /**
   * Runs fn holding the store's exclusive lock. The lock is released by the
   * kernel if this process dies, so a SIGKILL never wedges the store.
   */
  async transact<T>(fn: (tx: StoreTx<S>) => Promise<T>): Promise<T> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const fd = openSync(this.lockFile, fsc.O_CREAT | fsc.O_RDWR, 0o600);
    const addon = nativeAddon();
    try {
      if (!addon.flock(fd, 'ex', true)) {
        this.log.debug('store busy, waiting for lock');
        await waitForLock(fd);
      }
      let current = this.read();
      const tx: StoreTx<S> = {
        get state() {
          return current;
        },
        write: (next: S) => {
          this.writeAtomic(next);
          current = next;
        },
      };
      return await fn(tx);
    } finally {
      closeSync(fd); // closing the last fd drops the flock
    }
  }
}

/** Polls a non-blocking flock with backoff, keeping the event loop free. */
async function waitForLock(fd: number): Promise<void> {
  const addon = nativeAddon();
  let delay = 1;
  for (;;) {
    await new Promise((r) => setTimeout(r, delay));
    if (addon.flock(fd, 'ex', true)) return;
    delay = Math.min(delay * 2, 20);
  }
}
