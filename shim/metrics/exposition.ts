// The Prometheus text exposition format (version 0.0.4), and only that: metric families with their HELP and TYPE
// lines, one line per sample, label values escaped. What the samples are is collect.ts's business. A family with a
// bad name, or two samples of one series, is a bug in hull and throws rather than write a scrape Prometheus rejects.
import { HullError } from '../errors.js';

export type MetricType = 'gauge' | 'counter';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels: Labels;
  value: number;
}

export interface MetricFamily {
  /** `hull_…`; a counter's name ends in `_total`. */
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

/** The Content-Type of a scrape in this format. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value in a sample line: backslash, double quote and line feed escaped. */
export const escapeLabelValue = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** A HELP text: backslash and line feed escaped (quotes stay as they are). */
export const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

/** A sample value: integers as digits, NaN and infinities by their exposition names. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function formatLabels(family: string, labels: Labels): string {
  const names = Object.keys(labels).sort();
  for (const name of names) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new HullError('internal', `metric ${family}: bad label name "${name}"`);
  }
  return names.length === 0 ? '' : `{${names.map((n) => `${n}="${escapeLabelValue(labels[n]!)}"`).join(',')}}`;
}

/** The families as one scrape; families without samples still get their HELP and TYPE lines. */
export function formatExposition(families: readonly MetricFamily[]): string {
  const seenNames = new Set<string>();
  const lines: string[] = [];
  for (const f of families) {
    if (!METRIC_NAME.test(f.name)) throw new HullError('internal', `bad metric name "${f.name}"`);
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new HullError('internal', `counter ${f.name} does not end in _total`);
    if (seenNames.has(f.name)) throw new HullError('internal', `metric ${f.name} appears twice`);
    seenNames.add(f.name);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    const seenSeries = new Set<string>();
    for (const s of f.samples) {
      const labels = formatLabels(f.name, s.labels);
      if (seenSeries.has(labels)) throw new HullError('internal', `metric ${f.name}: two samples of the series ${labels || '{}'}`);
      seenSeries.add(labels);
      lines.push(`${f.name}${labels} ${formatValue(s.value)}`);
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
