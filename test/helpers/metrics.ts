// Reads a Prometheus text scrape as the tests check it: every sample line parsed (name, labels, value), and the
// format's rules checked on the way — HELP then TYPE before a family's samples, each family once, each series once.
import net from 'node:net';

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  let consumed = 0;
  for (let m = LABEL.exec(text); m; m = LABEL.exec(text)) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_a, c: string) => (c === 'n' ? '\n' : c));
    consumed = LABEL.lastIndex;
  }
  if (consumed !== text.length) throw new Error(`bad labels {${text}}`);
  return labels;
}

/** The samples of a scrape; throws on anything the exposition format does not allow. */
export function parseScrape(text: string): ParsedSample[] {
  if (!text.endsWith('\n')) throw new Error('a scrape ends with a line feed');
  const help = new Set<string>();
  const type = new Map<string, string>();
  const series = new Set<string>();
  const samples: ParsedSample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta) {
      const [, kind, name] = meta;
      if (kind === 'HELP') {
        if (help.has(name!)) throw new Error(`HELP of ${name} twice`);
        help.add(name!);
      } else {
        if (!help.has(name!) || type.has(name!)) throw new Error(`TYPE of ${name} without HELP before it, or twice`);
        if (!['gauge', 'counter'].includes(meta[3]!)) throw new Error(`TYPE of ${name}: ${meta[3]}`);
        type.set(name!, meta[3]!);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const name = m[1]!;
    if (!type.has(name)) throw new Error(`sample of ${name} before its TYPE`);
    if (type.get(name) === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} not named _total`);
    const key = `${name}{${m[2] ?? ''}}`;
    if (series.has(key)) throw new Error(`two samples of ${key}`);
    series.add(key);
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in ${line}`);
    samples.push({ name, labels: parseLabels(m[2] ?? ''), value });
  }
  return samples;
}

/** The value of the one sample of `name` whose labels include `labels`; throws when there is none or more than one. */
export function sampleValue(samples: ParsedSample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`);
  return found[0]!.value;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** GET /metrics, retried until the server listens (at most `timeoutMs`). */
export async function scrapeHttp(port: number, timeoutMs = 15_000): Promise<{ status: number; contentType: string | null; body: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      return { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
