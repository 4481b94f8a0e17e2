// Go-template-style --format strings, as Docker takes them: `{{.Name}}`,
// `{{json .IPAM}}`, `{{index .Options "com.docker.network.bridge.name"}}`,
// `{{range .IPAM.Config}}{{.Subnet}} {{end}}`, `{{if .Internal}}...{{else}}...{{end}}`,
// pipelines (`{{.Name | upper}}`) and Docker's helper functions. Values print as
// Go prints them (maps as map[k:v], lists as [a b], missing keys as <no value>).
import { InvalidConfigError } from '../errors.js';

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipe }
  | { kind: 'range' | 'if' | 'with'; pipe: Pipe; body: Node[]; otherwise: Node[] };

type Operand =
  | { kind: 'field'; base: 'dot' | 'root'; path: string[] }
  | { kind: 'literal'; value: unknown }
  | { kind: 'ident'; name: string }
  | { kind: 'pipe'; pipe: Pipe };
type Pipe = Operand[][];

export interface Template {
  /** Renders one value (the template's "." and "$"). */
  render(value: unknown): string;
}

const fail = (src: string, msg: string): never => {
  throw new InvalidConfigError(`invalid --format template ${JSON.stringify(src)}: ${msg}`);
};

/** Splits "text {{action}} text" into pieces, honouring {{- and -}} trimming. */
function lex(src: string): Array<{ text: string } | { action: string }> {
  const out: Array<{ text: string } | { action: string }> = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      out.push({ text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    let start = open + 2;
    if (src[start] === '-' && /\s/.test(src[start + 1] ?? '')) {
      text = text.replace(/\s+$/, '');
      start++;
    }
    if (text) out.push({ text });
    const close = src.indexOf('}}', start);
    if (close < 0) fail(src, 'unclosed action');
    let end = close;
    let next = close + 2;
    if (src[close - 1] === '-' && /\s/.test(src[close - 2] ?? '')) end = close - 1;
    const body = src.slice(start, end).trim();
    out.push({ action: body });
    if (end !== close) {
      while (next < src.length && /\s/.test(src[next]!)) next++;
    }
    i = next;
  }
  return out;
}

/** Tokens of one action: strings, numbers, fields, identifiers, | ( ). */
function tokens(src: string, action: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < action.length) {
    const c = action[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < action.length && action[j] !== '"') j += action[j] === '\\' ? 2 : 1;
      if (j >= action.length) fail(src, 'unterminated string');
      out.push(action.slice(i, j + 1));
      i = j + 1;
    } else if (c === '`') {
      const j = action.indexOf('`', i + 1);
      if (j < 0) fail(src, 'unterminated raw string');
      out.push(JSON.stringify(action.slice(i + 1, j)));
      i = j + 1;
    } else if ('|()'.includes(c)) {
      out.push(c);
      i++;
    } else {
      let j = i;
      while (j < action.length && !/[\s|()"]/.test(action[j]!)) j++;
      out.push(action.slice(i, j));
      i = j;
    }
  }
  return out;
}

function parsePipe(src: string, toks: string[], pos: { i: number }, closing?: string): Pipe {
  const pipe: Pipe = [[]];
  while (pos.i < toks.length) {
    const t = toks[pos.i]!;
    if (t === closing) {
      pos.i++;
      return pipe;
    }
    pos.i++;
    if (t === '|') {
      if (!pipe[pipe.length - 1]!.length) fail(src, 'empty command before |');
      pipe.push([]);
      continue;
    }
    const cmd = pipe[pipe.length - 1]!;
    if (t === '(') cmd.push({ kind: 'pipe', pipe: parsePipe(src, toks, pos, ')') });
    else if (t.startsWith('"')) cmd.push({ kind: 'literal', value: JSON.parse(t) });
    else if (/^-?\d+(\.\d+)?$/.test(t)) cmd.push({ kind: 'literal', value: Number(t) });
    else if (t === 'true' || t === 'false') cmd.push({ kind: 'literal', value: t === 'true' });
    else if (t === 'nil') cmd.push({ kind: 'literal', value: null });
    else if (t === '.') cmd.push({ kind: 'field', base: 'dot', path: [] });
    else if (t.startsWith('.')) cmd.push({ kind: 'field', base: 'dot', path: t.slice(1).split('.') });
    else if (t === '$') cmd.push({ kind: 'field', base: 'root', path: [] });
    else if (t.startsWith('$.')) cmd.push({ kind: 'field', base: 'root', path: t.slice(2).split('.') });
    else if (/^[A-Za-z_]\w*$/.test(t)) cmd.push({ kind: 'ident', name: t });
    else fail(src, `unexpected "${t}"`);
  }
  if (closing) fail(src, `missing ${closing}`);
  if (!pipe[pipe.length - 1]!.length) fail(src, 'empty pipeline');
  return pipe;
}

function parse(src: string): Node[] {
  const root: Node[] = [];
  const stack: Array<{ node: Extract<Node, { body: Node[] }>; inElse: boolean }> = [];
  const target = () => {
    const top = stack[stack.length - 1];
    return top ? (top.inElse ? top.node.otherwise : top.node.body) : root;
  };
  for (const piece of lex(src)) {
    if ('text' in piece) {
      target().push({ kind: 'text', text: piece.text });
      continue;
    }
    const a = piece.action;
    if (a.startsWith('/*')) continue; // a comment
    const [word] = a.split(/\s+/, 1);
    if (word === 'end') {
      if (!stack.pop()) fail(src, '{{end}} without {{range}}, {{if}} or {{with}}');
    } else if (word === 'else') {
      const top = stack[stack.length - 1];
      if (!top || top.inElse) fail(src, 'misplaced {{else}}');
      top!.inElse = true;
    } else if (word === 'range' || word === 'if' || word === 'with') {
      const pipe = parsePipe(src, tokens(src, a.slice(word.length)), { i: 0 });
      const node = { kind: word, pipe, body: [], otherwise: [] } as Extract<Node, { body: Node[] }>;
      target().push(node);
      stack.push({ node, inElse: false });
    } else {
      target().push({ kind: 'action', pipe: parsePipe(src, tokens(src, a), { i: 0 }) });
    }
  }
  if (stack.length) fail(src, `{{${stack[stack.length - 1]!.node.kind}}} without {{end}}`);
  return root;
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Go's %v: what {{.X}} prints. */
export function goString(v: unknown): string {
  if (v === undefined || v === null) return '<no value>';
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (isMap(v)) return `map[${Object.keys(v).sort().map((k) => `${k}:${goString(v[k])}`).join(' ')}]`;
  return String(v);
}

const truthy = (v: unknown) => !(v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && !v.length) || (isMap(v) && !Object.keys(v).length));

function sprintf(format: unknown, ...args: unknown[]): string {
  let i = 0;
  return String(format).replace(/%([-0-9]*)([svdqt%])/g, (_m, width: string, verb: string) => {
    if (verb === '%') return '%';
    const a = args[i++];
    const s = verb === 'q' ? JSON.stringify(goString(a)) : goString(a);
    const w = Number(width.replace('-', '')) || 0;
    return width.startsWith('-') ? s.padEnd(w) : s.padStart(w);
  });
}

const FUNCS: Record<string, (...a: unknown[]) => unknown> = {
  json: (v) => JSON.stringify(v ?? null),
  index: (v, ...keys) => keys.reduce<unknown>((x, k) => (x === undefined || x === null ? undefined : (x as Record<string, unknown>)[String(k)]), v),
  join: (list, sep) => (Array.isArray(list) ? list.map(goString).join(String(sep ?? '')) : goString(list)),
  split: (s, sep) => String(s ?? '').split(String(sep)),
  len: (v) => (Array.isArray(v) || typeof v === 'string' ? v.length : isMap(v) ? Object.keys(v).length : 0),
  lower: (s) => goString(s).toLowerCase(),
  upper: (s) => goString(s).toUpperCase(),
  title: (s) => goString(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  truncate: (s, n) => goString(s).slice(0, Number(n)),
  print: (...a) => a.map(goString).join(''),
  println: (...a) => `${a.map(goString).join(' ')}\n`,
  printf: (f, ...a) => sprintf(f, ...a),
  eq: (a, ...b) => b.some((x) => x === a),
  ne: (a, b) => a !== b,
  not: (a) => !truthy(a),
  and: (...a) => a.find((x) => !truthy(x)) ?? a[a.length - 1],
  or: (...a) => a.find(truthy) ?? a[a.length - 1],
};

export function compileTemplate(src: string): Template {
  const tree = parse(src);
  const evalOperand = (o: Operand, dot: unknown, root: unknown): unknown => {
    switch (o.kind) {
      case 'literal':
        return o.value;
      case 'field':
        return o.path.reduce<unknown>((x, k) => (isMap(x) ? x[k] : undefined), o.base === 'dot' ? dot : root);
      case 'pipe':
        return evalPipe(o.pipe, dot, root);
      case 'ident': {
        const f = FUNCS[o.name];
        if (!f) fail(src, `function "${o.name}" not defined`);
        return f!();
      }
    }
  };
  const evalPipe = (pipe: Pipe, dot: unknown, root: unknown): unknown => {
    let prev: unknown;
    pipe.forEach((cmd, n) => {
      const [head, ...rest] = cmd;
      const piped = n > 0 ? [prev] : [];
      if (head!.kind === 'ident') {
        const f = FUNCS[head!.name];
        if (!f) fail(src, `function "${head!.name}" not defined`);
        prev = f!(...rest.map((o) => evalOperand(o, dot, root)), ...piped);
      } else {
        if (rest.length || piped.length) fail(src, 'only a function can take arguments');
        prev = evalOperand(head!, dot, root);
      }
    });
    return prev;
  };
  const run = (nodes: Node[], dot: unknown, root: unknown): string =>
    nodes
      .map((n) => {
        if (n.kind === 'text') return n.text;
        const v = evalPipe(n.pipe, dot, root);
        if (n.kind === 'action') return goString(v);
        if (n.kind === 'if') return truthy(v) ? run(n.body, dot, root) : run(n.otherwise, dot, root);
        if (n.kind === 'with') return truthy(v) ? run(n.body, v, root) : run(n.otherwise, dot, root);
        const items = Array.isArray(v) ? v : isMap(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
        return items.length ? items.map((x) => run(n.body, x, root)).join('') : run(n.otherwise, dot, root);
      })
      .join('');
  return { render: (value) => run(tree, value, value) };
}
