// How `ls` and `inspect` print, as Docker's do: ls takes --format table (the
// default), json (one object per line, Docker's keys, string values), a Go
// template, or `table TEMPLATE` (a header row, aligned columns); inspect prints a
// JSON array, or one line per object with -f json / -f TEMPLATE.
import { InvalidConfigError } from '../errors.js';
import { compileTemplate } from './template.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3)))
      .join('')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export const shortId = (id: string) => id.slice(0, 12);

const hostText = (ip: string) => (ip.includes(':') ? `[${ip}]` : ip);
/** `docker port` lines: "80/tcp -> 0.0.0.0:8080", or just "0.0.0.0:8080" for one asked-for port. */
export const portLine = (p: { containerPort: number; proto: string; hostIP: string; hostPort: number }, short: boolean) =>
  short ? `${hostText(p.hostIP)}:${p.hostPort}` : `${p.containerPort}/${p.proto} -> ${hostText(p.hostIP)}:${p.hostPort}`;

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
