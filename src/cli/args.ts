// A small, strict command-line parser: --flag value, --flag=value, -f value,
// repeatable list flags, booleans, and "--" to end flags. Unknown flags are errors.
import { InvalidConfigError } from '../errors.js';

export interface FlagSpec {
  name: string;
  short?: string;
  type: 'bool' | 'string' | 'list';
  help: string;
  metavar?: string;
}

export interface Parsed {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Arguments after "--" (left untouched). */
  rest: string[];
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], opts: { stopAtFirstPositional?: boolean; restAfter?: number } = {}): Parsed {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  let rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest = argv.slice(i + 1);
      break;
    }
    // restAfter N: everything after the Nth positional is the command's (`run IMAGE CMD -x`).
    if (opts.restAfter !== undefined && positionals.length === opts.restAfter) {
      rest = argv.slice(i);
      break;
    }
    if (opts.stopAtFirstPositional && positionals.length && !a.startsWith('-')) {
      rest = argv.slice(i);
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      spec = byLong.get(name);
      if (!spec) throw new InvalidConfigError(`unknown flag: --${name}`);
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      // Combined short flags: -qf name=x is -q -f name=x; a flag taking a value ends the group.
      let j = 1;
      for (;;) {
        const name = a[j]!;
        spec = byShort.get(name);
        if (!spec) throw new InvalidConfigError(`unknown shorthand flag: '${name}' in ${a}`);
        if (spec.type !== 'bool' || j === a.length - 1) break;
        if (a[j + 1] === '=') break;
        flags[spec.name] = true;
        j++;
      }
      if (j < a.length - 1) inline = a.slice(j + 1).replace(/^=/, '');
    } else {
      positionals.push(a);
      continue;
    }
    if (spec.type === 'bool') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) throw new InvalidConfigError(`flag --${spec.name} takes true or false, not "${inline}"`);
      flags[spec.name] = inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new InvalidConfigError(`flag --${spec.name} needs a value`);
    if (spec.type === 'string') {
      if (flags[spec.name] !== undefined) throw new InvalidConfigError(`flag --${spec.name} given twice`);
      flags[spec.name] = value;
    } else {
      flags[spec.name] = [...((flags[spec.name] as string[] | undefined) ?? []), value];
    }
  }
  return { flags, positionals, rest };
}

/** "k=v" pairs into a record; every entry must have a key and '=' (bare: "k" alone means "k=", as Docker's --label). */
export function keyValues(list: string[] | undefined, what: string, opts: { bare?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq === 0 || (eq < 0 && (!opts.bare || !item))) throw new InvalidConfigError(`invalid ${what} "${item}": expected KEY=VALUE`);
    const k = eq < 0 ? item : item.slice(0, eq);
    if (Object.hasOwn(out, k)) throw new InvalidConfigError(`${what} ${k} given twice`);
    out[k] = eq < 0 ? '' : item.slice(eq + 1);
  }
  return out;
}

export function flagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'bool' ? '' : ` ${s.metavar ?? (s.type === 'list' ? 'list' : 'string')}`}`;
    return [left, s.help];
  });
  const w = Math.max(...rows.map((r) => r[0]!.length), 10);
  return rows.map(([l, h]) => `  ${l!.padEnd(w)}   ${h}`).join('\n');
}
