// `hull check`'s output: one `status  what: detail` line per finding and a verdict, or the same as JSON; exit 0 when
// nothing failed (warnings included: hull runs, with less), 1 with the failures otherwise.
import type { Finding } from './checks.js';

export interface CheckReport {
  /** True when no finding failed: hull can run containers on this host. */
  canRun: boolean;
  findings: Finding[];
}

export function checkReport(findings: Finding[]): CheckReport {
  return { canRun: !findings.some((f) => f.status === 'fail'), findings };
}

export function formatText(report: CheckReport): string {
  const lines = report.findings.map((f) => `${f.status.padEnd(4)}  ${f.what}: ${f.detail}`);
  const count = (s: Finding['status']): number => report.findings.filter((f) => f.status === s).length;
  const warnings = count('warn');
  const failures = count('fail');
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push(
    report.canRun
      ? `hull can run containers here${warnings ? ` (${plural(warnings, 'warning')})` : ''}`
      : `hull cannot run containers here: ${plural(failures, 'failure')}`,
  );
  return `${lines.join('\n')}\n`;
}

export function formatJson(report: CheckReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

export const exitCode = (report: CheckReport): number => (report.canRun ? 0 : 1);
