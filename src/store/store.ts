// The embedded, transactional state store. State is one JSON document, replaced
// atomically (write to a temp file, rename). Writers serialise on an flock(2) of
// the store's directory (a lock file could be deleted under a holder; a directory
// with entries cannot), so any number of tsnet processes can act at once; readers
// need no lock because a rename is atomic. Every write keeps the state it replaces
// as state.json.bak, and a state file that fails validation is reported with where
// it is and how to recover, never as a JavaScript error.
import { join } from 'node:path';
import { SyscallError, TsnetError } from '../errors.js';
import type { Logger } from '../log.js';
import type { FileOps, LockOps } from '../system/kernel.js';
import { RealLocks } from '../system/real/lock.js';
import { RealFiles } from '../system/real/files.js';

export interface StoreTx<S> {
  /** The state as of lock time (or after the last write in this transaction). */
  readonly state: S;
  /** Persist the state now (used to record intent before touching the kernel). */
  write(next: S): void;
}

export interface StoreOptions<S> {
  /** Checks a parsed document; throws (any error, its message is shown) when it is not a valid state. */
  validate?: (raw: unknown) => S;
  /** The files and locks it is kept with (default: the real kernel's). */
  kernel?: { files: FileOps; locks: LockOps };
}

export class StateInvalidError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STATE_INVALID', message, options);
  }
}

export class Store<S> {
  readonly stateFile: string;
  readonly backupFile: string;
  private readonly locks: LockOps;
  private readonly files: FileOps;

  constructor(
    readonly dir: string,
    private readonly initial: () => S,
    private readonly log: Logger,
    private readonly opts: StoreOptions<S> = {},
  ) {
    this.stateFile = join(dir, 'state.json');
    this.backupFile = join(dir, 'state.json.bak');
    this.locks = opts.kernel?.locks ?? new RealLocks();
    this.files = opts.kernel?.files ?? new RealFiles();
  }

  /** Lock-free snapshot read (returns the initial state when nothing was written yet). */
  read(): S {
    let text: string | undefined;
    try {
      text = this.files.read(this.stateFile);
    } catch (err) {
      const e = err as SyscallError;
      throw new SyscallError(e.syscall ?? 'read', e.errno ?? 'EIO', `state file ${this.stateFile} is unreadable: ${e.message}`, { cause: err });
    }
    if (text === undefined) return this.initial();
    try {
      const raw: unknown = JSON.parse(text);
      return this.opts.validate ? this.opts.validate(raw) : (raw as S);
    } catch (err) {
      const backup = this.files.kind(this.backupFile) !== undefined
        ? `the previous state is in ${this.backupFile}: restore it with 'cp ${this.backupFile} ${this.stateFile}'`
        : `no backup exists: move it away to start from an empty state (kernel objects it described are then left behind)`;
      throw new StateInvalidError(`state file ${this.stateFile} is invalid (${(err as Error).message}); ${backup}`, { cause: err });
    }
  }

  private writeAtomic(state: S): void {
    // The new state first: a full disk fails here and changes nothing, backup included.
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    try {
      const text = JSON.stringify(state);
      // One there is a dead writer's of our pid (the others are gone at lock time): replaced.
      if (!this.files.create(tmp, text, 0o600) && !(this.files.remove(tmp) && this.files.create(tmp, text, 0o600))) {
        throw new SyscallError('open', 'EEXIST', `${tmp} exists`);
      }
    } catch (err) {
      this.files.remove(tmp); // a full disk must not leave a partial file behind
      const e = err as SyscallError;
      throw new SyscallError('write', e.errno ?? 'EIO', `cannot write the state file ${this.stateFile}: ${e.message}`, { cause: err });
    }
    // The state being replaced was validated when this transaction read it: keep it.
    try {
      if (this.files.kind(`${this.backupFile}.tmp`) !== undefined) this.files.remove(`${this.backupFile}.tmp`);
      this.files.link(this.stateFile, `${this.backupFile}.tmp`);
      this.files.rename(`${this.backupFile}.tmp`, this.backupFile);
    } catch (err) {
      if ((err as SyscallError).errno !== 'ENOENT') this.log.warn({ err }, 'could not keep a backup of the state file');
    }
    this.files.rename(tmp, this.stateFile);
  }

  /** Temp files of writers that died mid-write (we hold the lock: nobody is writing). */
  private removeStaleTemps(): void {
    for (const f of this.files.list(this.dir)) {
      if (/^state\.json\.\d+\.tmp$/.test(f)) this.files.remove(join(this.dir, f));
    }
  }

  /**
   * Runs fn holding the store's exclusive lock. The lock is released by the
   * kernel if this process dies, so a SIGKILL never wedges the store.
   */
  async transact<T>(fn: (tx: StoreTx<S>) => Promise<T>): Promise<T> {
    this.files.mkdir(this.dir, 0o700);
    return this.locks.withLock(this.dir, async () => {
      this.removeStaleTemps();
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
      return fn(tx);
    });
  }
}
