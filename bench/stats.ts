// Small statistics helpers shared by the benchmarks.
export function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export interface Summary {
  n: number;
  median: number;
  p95: number;
  mean: number;
  at10: number;
  atLast: number;
  first20Median: number;
  last20Median: number;
}

export function summarize(ms: number[]): Summary {
  const s = [...ms].sort((a, b) => a - b);
  const med = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
  return {
    n: ms.length,
    median: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    mean: ms.reduce((a, b) => a + b, 0) / Math.max(ms.length, 1),
    at10: ms[9] ?? NaN,
    atLast: ms[ms.length - 1] ?? NaN,
    first20Median: med(ms.slice(0, 20)),
    last20Median: med(ms.slice(-20)),
  };
}

export const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');

export function row(label: string, s: Summary): string {
  return `| ${label} | ${s.n} | ${fmt(s.median)} | ${fmt(s.p95)} | ${fmt(s.at10)} | ${fmt(s.atLast)} | ${fmt(s.first20Median)} | ${fmt(s.last20Median)} |`;
}

export const HEADER = [
  '| operation | n | median ms | p95 ms | 10th op ms | last op ms | median of first 20 | median of last 20 |',
  '|---|---|---|---|---|---|---|---|',
];
