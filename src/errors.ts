// Typed errors. Every failure tsnet reports is a TsnetError with a stable code;
// ERROR_TABLE maps that code to a CNI error code, a gRPC status and a CLI exit
// code, so that no caller ever has to match on message text.

export type ErrorCode =
  | 'INVALID_CONFIG'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'CONFLICT'
  | 'PORT_IN_USE'
  | 'EXHAUSTED'
  | 'SYSCALL'
  | 'COMMAND'
  | 'UNSUPPORTED'
  | 'STATE_INVALID'
  | 'UNAVAILABLE'
  | 'CHECK_FAILED'
  | 'INTERNAL';

export interface ErrorMapping {
  /**
   * CNI error code. Codes below 100 belong to the spec and carry its meaning (3,
   * for one, tells the runtime that no cleanup is needed), so only errors that mean
   * exactly that use them; everything else is plugin-specific (100 and above).
   */
  cni: number;
  /** gRPC status code. */
  grpc: number;
  /** Exit code of the tsnet CLI. */
  exit: number;
}

export const ERROR_TABLE: Readonly<Record<ErrorCode, ErrorMapping>> = {
  INVALID_CONFIG: { cni: 7 /* invalid network configuration */, grpc: 3 /* INVALID_ARGUMENT */, exit: 2 },
  UNSUPPORTED: { cni: 2 /* unsupported field in the configuration */, grpc: 12 /* UNIMPLEMENTED */, exit: 12 },
  EXHAUSTED: { cni: 11 /* try again later */, grpc: 8 /* RESOURCE_EXHAUSTED */, exit: 7 },
  SYSCALL: { cni: 100, grpc: 13 /* INTERNAL */, exit: 10 },
  COMMAND: { cni: 101, grpc: 13 /* INTERNAL */, exit: 11 },
  ALREADY_EXISTS: { cni: 103, grpc: 6 /* ALREADY_EXISTS */, exit: 4 },
  CONFLICT: { cni: 104, grpc: 9 /* FAILED_PRECONDITION */, exit: 5 },
  PORT_IN_USE: { cni: 105, grpc: 6 /* ALREADY_EXISTS */, exit: 6 },
  // Not 3: the spec's 3 ("container unknown") tells the runtime to skip cleanup.
  NOT_FOUND: { cni: 106, grpc: 5 /* NOT_FOUND */, exit: 3 },
  STATE_INVALID: { cni: 107, grpc: 15 /* DATA_LOSS */, exit: 13 },
  // A tool or service this needs is missing (CNI STATUS: "plugin not available").
  UNAVAILABLE: { cni: 50, grpc: 14 /* UNAVAILABLE */, exit: 14 },
  // What was set up is no longer there (CNI CHECK).
  CHECK_FAILED: { cni: 102, grpc: 9 /* FAILED_PRECONDITION */, exit: 15 },
  INTERNAL: { cni: 999, grpc: 13 /* INTERNAL */, exit: 1 },
};

export class TsnetError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  get mapping(): ErrorMapping {
    return ERROR_TABLE[this.code];
  }
}

export class InvalidConfigError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options);
  }
}
export class NotFoundError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_FOUND', message, options);
  }
}
export class AlreadyExistsError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ALREADY_EXISTS', message, options);
  }
}
export class ConflictError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFLICT', message, options);
  }
}
export class PortInUseError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PORT_IN_USE', message, options);
  }
}
export class ExhaustedError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EXHAUSTED', message, options);
  }
}
export class UnsupportedError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNSUPPORTED', message, options);
  }
}

/** An image, a layer or an archive that is not what it claims (bad digest, unsafe or truncated tar). */
export class ImageInvalidError extends TsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options);
  }
}

/** A failed system call or netlink request; errno is the symbolic name (EEXIST, ...). */
export class SyscallError extends TsnetError {
  readonly errno: string;
  readonly syscall: string;
  constructor(syscall: string, errno: string, message: string, options?: { cause?: unknown }) {
    super('SYSCALL', message, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** An external command that exited non-zero. */
export class CommandError extends TsnetError {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number | null, stderr: string, options?: { cause?: unknown }) {
    const first = stderr.trim().split('\n')[0] ?? '';
    super('COMMAND', `${argv[0]} exited with ${exitCode ?? 'a signal'}${first ? `: ${first}` : ''}`, options);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * Wrap anything thrown into a TsnetError (INTERNAL unless it already is one). An
 * AggregateError (teardown that carried on past failures) reports its failures'
 * code when they all share one, and INTERNAL when they differ: no one failure's
 * kind stands for the others.
 */
export function asTsnetError(err: unknown): TsnetError {
  if (err instanceof TsnetError) return err;
  if (err instanceof AggregateError) {
    const inner = err.errors.map(asTsnetError);
    const codes = new Set(inner.map((x) => x.code));
    const code = codes.size === 1 ? inner[0]!.code : 'INTERNAL';
    return new TsnetError(code, [err.message, ...inner.map((x) => x.message)].join('; '), { cause: err });
  }
  const e = err as { code?: unknown; errno?: unknown; syscall?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)) {
    return new SyscallError(String(e.syscall ?? 'syscall'), e.code, String(e.message ?? e.code), { cause: err });
  }
  return new TsnetError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

/**
 * Run every step even when some fail, and throw one AggregateError naming all
 * failures (teardown never stops at the first error).
 */
export async function runAll(what: string, steps: Array<() => Promise<unknown> | unknown>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${what}: ${errors.length} steps failed`);
}
