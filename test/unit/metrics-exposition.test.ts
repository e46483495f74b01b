// hull metrics (docs/metrics.md): the Prometheus text format hull writes, the --listen address it accepts, and the
// guest's numbers it trusts (none it does not expect).
import { describe, expect, it } from 'vitest';
import { escapeHelp, escapeLabelValue, formatExposition, type MetricFamily } from '../../shim/metrics/exposition.js';
import { fromGuest } from '../../shim/metrics/guest-stats.js';
import { parseListen } from '../../shim/metrics/listen.js';

describe('exposition format', () => {
  it('writes HELP and TYPE once per family, then one line per sample, labels sorted and escaped', () => {
    const families: MetricFamily[] = [
      {
        name: 'hull_sandbox_up',
        type: 'gauge',
        help: 'Up.\nSecond line with a \\ backslash and "quotes"',
        samples: [
          { labels: { sandbox: 'a"b\\c\nd', root: '/run/hull' }, value: 1 },
          { labels: { sandbox: 'b', root: '/run/hull' }, value: 0 },
        ],
      },
      { name: 'hull_container_oom_kills_total', type: 'counter', help: 'OOM kills.', samples: [{ labels: {}, value: 3 }] },
      { name: 'hull_pool_target_size', type: 'gauge', help: 'Empty.', samples: [] },
    ];
    expect(formatExposition(families)).toBe(
      [
        '# HELP hull_sandbox_up Up.\\nSecond line with a \\\\ backslash and "quotes"',
        '# TYPE hull_sandbox_up gauge',
        'hull_sandbox_up{root="/run/hull",sandbox="a\\"b\\\\c\\nd"} 1',
        'hull_sandbox_up{root="/run/hull",sandbox="b"} 0',
        '# HELP hull_container_oom_kills_total OOM kills.',
        '# TYPE hull_container_oom_kills_total counter',
        'hull_container_oom_kills_total 3',
        '# HELP hull_pool_target_size Empty.',
        '# TYPE hull_pool_target_size gauge',
        '',
      ].join('\n'),
    );
  });

  it('escapes label values and HELP texts as the format says', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeHelp('a\\b"c\nd')).toBe('a\\\\b"c\\nd');
  });

  it('writes NaN and infinities by their names, fractions as they are', () => {
    const f = (value: number) => formatExposition([{ name: 'x', type: 'gauge', help: 'h', samples: [{ labels: {}, value }] }]).split('\n')[2];
    expect([f(NaN), f(Infinity), f(-Infinity), f(0.25), f(536870912)]).toEqual(['x NaN', 'x +Inf', 'x -Inf', 'x 0.25', 'x 536870912']);
  });

  it('refuses two samples of one series, a family twice, a counter not named _total and bad names', () => {
    const gauge = (samples: MetricFamily['samples'], name = 'hull_x'): MetricFamily => ({ name, type: 'gauge', help: 'h', samples });
    expect(() => formatExposition([gauge([{ labels: { a: '1', b: '2' }, value: 1 }, { labels: { b: '2', a: '1' }, value: 2 }])])).toThrow(
      /two samples of the series \{a="1",b="2"\}/,
    );
    expect(() => formatExposition([gauge([]), gauge([])])).toThrow(/hull_x appears twice/);
    expect(() => formatExposition([{ name: 'hull_oom_kills', type: 'counter', help: 'h', samples: [] }])).toThrow(/does not end in _total/);
    expect(() => formatExposition([gauge([], 'hull-x')])).toThrow(/bad metric name/);
    expect(() => formatExposition([gauge([{ labels: { 'bad-label': 'v' }, value: 1 }])])).toThrow(/bad label name "bad-label"/);
    expect(() => formatExposition([gauge([{ labels: { __name__: 'v' }, value: 1 }])])).toThrow(/bad label name/);
  });
});

describe('--listen', () => {
  it('takes HOST:PORT and [IPv6]:PORT', () => {
    expect(parseListen('127.0.0.1:9099')).toEqual({ host: '127.0.0.1', port: 9099 });
    expect(parseListen('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseListen('localhost:1')).toEqual({ host: 'localhost', port: 1 });
  });

  it('refuses anything else in one line naming the flag', () => {
    for (const bad of ['9099', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '::1:9099', '[nothost]:1', 'a b:1', ':9099', '127.0.0.1:9099x']) {
      expect(() => parseListen(bad), bad).toThrow(new RegExp(`^--listen "${bad.replace(/[[\]]/g, '\\$&')}": `));
    }
  });
});

describe('guest cgroup numbers', () => {
  it('keeps known keys as non-negative safe integers and makes anything else 0', () => {
    const stats = fromGuest({
      memoryCurrent: 4096,
      memoryMax: -1,
      memorySwapCurrent: 0,
      memorySwapMax: 0,
      memoryStat: {},
      cpuStat: { usage_usec: 1_500_000, user_usec: 2 ** 60, system_usec: 1.5, throttled_usec: 7 },
      pidsCurrent: 3,
      pidsMax: Number.NaN,
      memoryEvents: { oom_kill: 2 },
    });
    expect(stats).toEqual({
      cpuUsageUsec: 1_500_000,
      cpuUserUsec: 0,
      cpuSystemUsec: 0,
      cpuThrottledUsec: 7,
      memoryBytes: 4096,
      memoryLimitBytes: 0,
      oomKills: 2,
      pids: 3,
      pidsLimit: 0,
    });
  });
});
