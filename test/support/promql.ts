/**
 * The part of PromQL lanplug's Grafana dashboard uses (docs/grafana/), read
 * and evaluated over scrapes of the daemon's /metrics page: the dashboard's
 * test (test/unit/dashboard.test.ts) checks every query with it against a
 * real registry, and the dashboard's lab rendering (test/bench/
 * dashboard-snapshot.ts) draws its panels with it. Not a Prometheus: no
 * lookback, no staleness, rates without extrapolation. A query outside
 * this part is refused by name, so that the dashboard cannot use what
 * neither check can read.
 *
 *   expr     := number | selector | rate(range) | increase(range)
 *             | sum [by (label, …)] (expr) | histogram_quantile(number, expr)
 *   selector := name [{label op "value", …}]     op: = != =~ !~
 *   range    := selector [duration]               duration: 30s, 5m, $__rate_interval
 */

export type Labels = Record<string, string>;

/** One sample line of an exposition: name, labels, value. */
export interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

/** The page at one time (ms). */
export interface Scrape {
  at: number;
  samples: Sample[];
}

export interface Series {
  labels: Labels;
  value: number;
}

type Matcher = { label: string; op: '=' | '!=' | '=~' | '!~'; value: string };

export type Expr =
  | { kind: 'number'; value: number }
  | { kind: 'selector'; name: string; matchers: Matcher[]; rangeSeconds: number | null }
  | { kind: 'rate' | 'increase'; arg: Expr & { kind: 'selector' } }
  | { kind: 'sum'; by: string[] | null; arg: Expr }
  | { kind: 'histogram_quantile'; q: number; arg: Expr };

/** Reads a text exposition (format 0.0.4): every sample line, comments skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) throw new Error(`promql: not a sample line: ${line}`);
    const labels: Labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    const raw = m[3] ?? '';
    samples.push({
      name: m[1] ?? '',
      labels,
      value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw),
    });
  }
  return samples;
}

/** Every metric name a query reads (a histogram's `_bucket` as written). */
export function metricNames(expr: Expr): string[] {
  switch (expr.kind) {
    case 'number':
      return [];
    case 'selector':
      return [expr.name];
    default:
      return metricNames(expr.arg);
  }
}

/** Reads a query; `rateIntervalSeconds` stands for Grafana's `$__rate_interval`. */
export function parseQuery(text: string, rateIntervalSeconds: number): Expr {
  const tokens = tokenize(text.replace(/\$__rate_interval/g, `${rateIntervalSeconds}s`));
  let at = 0;
  const peek = (): string | undefined => tokens[at];
  const next = (): string => {
    const t = tokens[at++];
    if (t === undefined) throw new Error(`promql: ${text}: ends too soon`);
    return t;
  };
  const expect = (t: string): void => {
    const got = next();
    if (got !== t) throw new Error(`promql: ${text}: expected ${t}, found ${got}`);
  };
  const labelList = (): string[] => {
    expect('(');
    const labels: string[] = [];
    while (peek() !== ')') {
      labels.push(next());
      if (peek() === ',') next();
    }
    expect(')');
    return labels;
  };
  const selector = (name: string): Expr & { kind: 'selector' } => {
    const matchers: Matcher[] = [];
    if (peek() === '{') {
      next();
      while (peek() !== '}') {
        const label = next();
        const op = next();
        if (op !== '=' && op !== '!=' && op !== '=~' && op !== '!~') throw new Error(`promql: ${text}: operator ${op}`);
        const quoted = next();
        if (!quoted.startsWith('"')) throw new Error(`promql: ${text}: expected a quoted value, found ${quoted}`);
        matchers.push({ label, op, value: JSON.parse(quoted) as string });
        if (peek() === ',') next();
      }
      expect('}');
    }
    let rangeSeconds: number | null = null;
    if (peek() === '[') {
      next();
      const d = /^(\d+)(s|m|h)$/.exec(next());
      if (d === null) throw new Error(`promql: ${text}: a range is seconds, minutes or hours`);
      rangeSeconds = Number(d[1]) * { s: 1, m: 60, h: 3600 }[d[2] as 's' | 'm' | 'h'];
      expect(']');
    }
    return { kind: 'selector', name, matchers, rangeSeconds };
  };
  const expr = (): Expr => {
    const t = next();
    if (/^[0-9.]+$/.test(t)) return { kind: 'number', value: Number(t) };
    if (t === 'sum') {
      const by = peek() === 'by' ? (next(), labelList()) : null;
      expect('(');
      const arg = expr();
      expect(')');
      return { kind: 'sum', by, arg };
    }
    if (t === 'rate' || t === 'increase') {
      expect('(');
      const arg = selector(next());
      if (arg.rangeSeconds === null) throw new Error(`promql: ${text}: ${t} needs a range`);
      expect(')');
      return { kind: t, arg };
    }
    if (t === 'histogram_quantile') {
      expect('(');
      const q = expr();
      if (q.kind !== 'number') throw new Error(`promql: ${text}: histogram_quantile's first argument is a number`);
      expect(',');
      const arg = expr();
      expect(')');
      return { kind: 'histogram_quantile', q: q.value, arg };
    }
    if (peek() === '(') throw new Error(`promql: ${text}: ${t}() is not in the part of PromQL the dashboard may use`);
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(t)) throw new Error(`promql: ${text}: unexpected ${t}`);
    const s = selector(t);
    if (s.rangeSeconds !== null) throw new Error(`promql: ${text}: a range outside rate() or increase()`);
    return s;
  };
  const result = expr();
  if (at !== tokens.length) throw new Error(`promql: ${text}: unexpected ${tokens[at] ?? ''}`);
  return result;
}

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|=~|!~|!=|[(){}[\],=]|[a-zA-Z_:][a-zA-Z0-9_:]*|\d+[smh]|[0-9.]+)/y;
  let at = 0;
  while (at < text.length) {
    if (/^\s*$/.test(text.slice(at))) break;
    re.lastIndex = at;
    const m = re.exec(text);
    if (m === null) throw new Error(`promql: cannot read ${text} at ${text.slice(at)}`);
    tokens.push(m[1] ?? '');
    at = re.lastIndex;
  }
  return tokens;
}

/** The query's instant vector at the scrape `index` of `scrapes` (oldest first). */
export function evaluate(expr: Expr, scrapes: readonly Scrape[], index: number): Series[] {
  switch (expr.kind) {
    case 'number':
      return [{ labels: {}, value: expr.value }];
    case 'selector':
      return select(scrapes[index]?.samples ?? [], expr).map((s) => ({ labels: s.labels, value: s.value }));
    case 'rate':
    case 'increase': {
      const now = scrapes[index];
      if (now === undefined) return [];
      const rangeMs = (expr.arg.rangeSeconds ?? 0) * 1000;
      const window = scrapes.slice(0, index + 1).filter((s) => s.at > now.at - rangeMs);
      const first = window[0];
      if (first === undefined || window.length < 2) return [];
      const out: Series[] = [];
      for (const last of select(now.samples, expr.arg)) {
        const key = seriesKey(last.name, last.labels);
        const start = select(first.samples, expr.arg).find((s) => seriesKey(s.name, s.labels) === key);
        if (start === undefined) continue;
        // A counter that went down was reset (the daemon restarted): what it counted since is its value.
        const delta = last.value >= start.value ? last.value - start.value : last.value;
        const perSecond = delta / ((now.at - first.at) / 1000);
        out.push({ labels: last.labels, value: expr.kind === 'rate' ? perSecond : perSecond * (rangeMs / 1000) });
      }
      return out;
    }
    case 'sum': {
      const groups = new Map<string, Series>();
      for (const s of evaluate(expr.arg, scrapes, index)) {
        const labels: Labels = {};
        for (const l of expr.by ?? []) if (s.labels[l] !== undefined) labels[l] = s.labels[l];
        const key = seriesKey('', labels);
        const group = groups.get(key);
        if (group === undefined) groups.set(key, { labels, value: s.value });
        else group.value += s.value;
      }
      return [...groups.values()];
    }
    case 'histogram_quantile': {
      const histograms = new Map<string, { labels: Labels; buckets: { le: number; count: number }[] }>();
      for (const s of evaluate(expr.arg, scrapes, index)) {
        const le = s.labels['le'];
        if (le === undefined) continue;
        const labels = { ...s.labels };
        delete labels['le'];
        const key = seriesKey('', labels);
        const h = histograms.get(key) ?? { labels, buckets: [] };
        h.buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: s.value });
        histograms.set(key, h);
      }
      return [...histograms.values()]
        .map((h) => ({ labels: h.labels, value: bucketQuantile(expr.q, h.buckets) }))
        .filter((s) => Number.isFinite(s.value));
    }
  }
}

/** Prometheus's histogram_quantile: the bucket holding rank q·total, interpolated linearly within it. */
function bucketQuantile(q: number, unsorted: readonly { le: number; count: number }[]): number {
  const buckets = [...unsorted].sort((a, b) => a.le - b.le);
  const total = buckets[buckets.length - 1]?.count ?? 0;
  if (total <= 0 || buckets[buckets.length - 1]?.le !== Infinity) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower;
      return lower + (b.le - lower) * ((rank - below) / (b.count - below || 1));
    }
    lower = b.le;
    below = b.count;
  }
  return NaN;
}

function select(samples: readonly Sample[], s: Expr & { kind: 'selector' }): Sample[] {
  return samples.filter(
    (sample) =>
      sample.name === s.name &&
      s.matchers.every((m) => {
        const v = sample.labels[m.label] ?? '';
        if (m.op === '=') return v === m.value;
        if (m.op === '!=') return v !== m.value;
        const matches = new RegExp(`^(?:${m.value})$`).test(v);
        return m.op === '=~' ? matches : !matches;
      }),
  );
}

function seriesKey(name: string, labels: Labels): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;
}

/** A panel's legend for one series: Grafana's `{{label}}` templates filled in. */
export function legendOf(format: string | undefined, labels: Labels): string {
  if (format === undefined || format === '') return seriesKey('', labels);
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, l: string) => labels[l] ?? '');
}
