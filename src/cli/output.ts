// How `ls` and `inspect` print, as Docker's do: ls takes --format table (the
// default), json (one object per line, Docker's keys, string values), a Go
// template, or `table TEMPLATE` (a header row, aligned columns); inspect prints a
// JSON array, or one line per object with -f json / -f TEMPLATE. ls --filter
// KEY=VALUE narrows rows (several values of one key: any; different keys: all).
import { InvalidConfigError } from '../errors.js';
import { table } from './format.js';
import { compileTemplate } from './template.js';

/** One ls row: Docker's field names, string values (what templates and json see). */
export type Row = Record<string, string>;

export interface ListSpec {
  /** Columns of the default table: field and header. */
  columns: Array<[string, string]>;
  /** Headers of every field, for `table TEMPLATE`. */
  headers: Record<string, string>;
  /** The field -q prints. */
  idField: string;
}

/** Docker's tabwriter output: cells split at tabs, columns padded to align. */
function aligned(lines: string[]): string {
  const rows = lines.map((l) => l.split('\t'));
  const [head, ...rest] = rows;
  return table(head ?? [], rest);
}

/** `\t` and `\n` as written on a command line become the characters (Docker does the same). */
const unescape = (f: string) => f.replace(/\\t/g, '\t').replace(/\\n/g, '\n');

export function renderList(rows: Row[], spec: ListSpec, opts: { format?: string; quiet?: boolean }): string[] {
  if (opts.quiet) return rows.map((r) => r[spec.idField] ?? '');
  const format = opts.format ?? 'table';
  if (format === 'json') return rows.map((r) => JSON.stringify(r));
  if (format === 'table') return [table(spec.columns.map(([, h]) => h), rows.map((r) => spec.columns.map(([f]) => r[f] ?? '')))];
  if (format.startsWith('table ')) {
    const t = compileTemplate(unescape(format.slice(6)));
    return [aligned([t.render(spec.headers), ...rows.map((r) => t.render(r))])];
  }
  const t = compileTemplate(unescape(format));
  return rows.map((r) => t.render(r));
}

/** inspect: a JSON array (indent 4), or one line per object. */
export function renderInspect(objects: unknown[], format: string | undefined): string[] {
  if (format === undefined || format === '') return [JSON.stringify(objects, null, 4)];
  if (format === 'json') return objects.map((o) => JSON.stringify(o));
  if (format === 'table' || format.startsWith('table ')) throw new InvalidConfigError(`inspect --format takes a Go template or json, not a table (see 'ls --format')`);
  const t = compileTemplate(unescape(format));
  return objects.map((o) => t.render(o));
}

export interface FilterSpec<T> {
  /** key -> does the record match this value */
  [key: string]: (item: T, value: string) => boolean;
}

/** Parses --filter KEY=VALUE entries against the keys a command knows. */
export function parseFilters<T>(entries: string[], keys: FilterSpec<T>): Array<(item: T) => boolean> {
  const byKey = new Map<string, string[]>();
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq <= 0) throw new InvalidConfigError(`bad format of filter "${e}": expected KEY=VALUE`);
    const k = e.slice(0, eq).toLowerCase();
    if (!Object.hasOwn(keys, k)) throw new InvalidConfigError(`invalid filter '${k}' (known: ${Object.keys(keys).join(', ')})`);
    byKey.set(k, [...(byKey.get(k) ?? []), e.slice(eq + 1)]);
  }
  return [...byKey].map(([k, values]) => (item: T) => values.some((v) => keys[k]!(item, v)));
}

export const matchesAll = <T>(filters: Array<(item: T) => boolean>) => (item: T) => filters.every((f) => f(item));

/** A label filter value: "key" (has it) or "key=value". */
export function labelMatch(labels: Record<string, string>, value: string): boolean {
  const eq = value.indexOf('=');
  if (eq < 0) return Object.hasOwn(labels, value);
  return labels[value.slice(0, eq)] === value.slice(eq + 1);
}

export function boolFilter(value: string, key: string): boolean {
  const v = value.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new InvalidConfigError(`invalid filter '${key}=${value}': use true or false`);
}
