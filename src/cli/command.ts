// What a CLI command is, and the few helpers every command module shares.
import type { Composed, Settings } from '../compose/index.js';
import type { Removal } from '../api/api.js';
import type { FlagSpec } from './args.js';

export interface Command {
  path: string;
  usage: string;
  summary: string;
  flags: FlagSpec[];
  run(args: { flags: Record<string, unknown>; positionals: string[]; rest: string[] }, env: Env): Promise<number>;
  minArgs?: number;
  maxArgs?: number;
  /** After this many positionals, every argument is the command's own (`run IMAGE CMD...`, `exec NAME CMD...`). */
  restAfter?: number;
  /** Where help lists it (default: its first word). */
  group?: string;
  /** Not listed in help (the monitor's `container cleanup`). */
  hidden?: boolean;
}

export interface Env {
  tsnet(): Composed;
  settings(): Settings;
  out(s: string): void;
  err(s: string): void;
}

export const str = (v: unknown) => (v === undefined ? undefined : String(v));
export const list = (v: unknown) => (v as string[] | undefined) ?? [];

/** Multi-name rm: prints what went, reports each failure on stderr, exits non-zero if any failed (as Docker). */
export function reportRemoval(r: Removal, env: Env): number {
  for (const n of r.removed) env.out(n);
  for (const f of r.failed) env.err(`Error: ${f.error.message}`);
  return r.failed.length ? r.failed[0]!.error.mapping.exit : 0;
}

