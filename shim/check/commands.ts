// `hull check` and `hull env` as the CLI (shim/runc/cli.ts) calls them: each prints to stdout and returns the exit code.
import { collectEnv, formatEnv, type EnvFlags } from './env.js';
import { applyConfig } from '../config/startup.js';
import { runChecks } from './checks.js';
import { checkReport, exitCode, formatJson, formatText } from './report.js';

export function check(format: string): number {
  try {
    applyConfig();
  } catch {
    // a bad config file is one of check's findings (checks.ts checkConfig reads the same cached error)
  }
  const report = checkReport(runChecks());
  process.stdout.write(format === 'json' ? formatJson(report) : formatText(report));
  return exitCode(report);
}

export function env(flags: EnvFlags, format: string): number {
  process.stdout.write(formatEnv(collectEnv(flags), format));
  return 0;
}
