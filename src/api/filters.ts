// ls filters as Docker's daemon applies them (pure): known keys per listing, values
// of one key are alternatives, different keys must all match.
import { InvalidConfigError } from '../errors.js';
import type { NetworkRecord, SandboxRecord, State } from '../controller/model.js';
import type { Filters } from './api.js';

type Matcher<T> = (item: T, value: string) => boolean;

/** "k=v" entries (the CLI's --filter) into Filters. */
export function parseFilterArgs(entries: string[]): Filters {
  const out: Filters = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq <= 0) throw new InvalidConfigError(`bad format of filter "${e}": expected KEY=VALUE`);
    const k = e.slice(0, eq).toLowerCase();
    (out[k] ??= []).push(e.slice(eq + 1));
  }
  return out;
}

function compile<T>(filters: Filters, keys: Record<string, Matcher<T>>): (item: T) => boolean {
  const checks = Object.entries(filters).map(([k, values]) => {
    if (!Object.hasOwn(keys, k)) throw new InvalidConfigError(`invalid filter '${k}' (known: ${Object.keys(keys).join(', ')})`);
    return (item: T) => values.some((v) => keys[k]!(item, v));
  });
  return (item) => checks.every((c) => c(item));
}

/** A label filter value: "key" (has it) or "key=value". */
export function labelMatch(labels: Record<string, string>, value: string): boolean {
  const eq = value.indexOf('=');
  if (eq < 0) return Object.hasOwn(labels, value);
  return labels[value.slice(0, eq)] === value.slice(eq + 1);
}

function boolValue(value: string, key: string): boolean {
  const v = value.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new InvalidConfigError(`invalid filter '${key}=${value}': use true or false`);
}

export function networkFilter(s: State, filters: Filters): (n: NetworkRecord) => boolean {
  const used = (n: NetworkRecord) => Object.values(s.endpoints).some((e) => e.networkId === n.id);
  return compile<NetworkRecord>(filters, {
    name: (n, v) => n.name.includes(v),
    id: (n, v) => n.id.startsWith(v),
    driver: (n, v) => n.driver === v,
    label: (n, v) => labelMatch(n.labels, v),
    type: (n, v) => {
      if (v !== 'custom' && v !== 'builtin') throw new InvalidConfigError(`invalid filter 'type=${v}': use custom or builtin`);
      return n.predefined === (v === 'builtin');
    },
    dangling: (n, v) => !n.predefined && !used(n) === boolValue(v, 'dangling'),
    scope: (_n, v) => v === 'local',
  });
}

export function sandboxFilter(s: State, filters: Filters): (x: SandboxRecord) => boolean {
  return compile<SandboxRecord>(filters, {
    name: (x, v) => x.name.includes(v),
    id: (x, v) => x.id.startsWith(v),
    kind: (x, v) => x.kind === v,
    network: (x, v) => Object.values(s.endpoints).some((e) => e.sandboxId === x.id && (s.networks[e.networkId]?.name === v || e.networkId.startsWith(v))),
  });
}
