import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** runc's format: the decimal pid with no newline, written to a dot-temp file then renamed into place. */
export function writePidFile(file: string, pid: number): void {
  const target = path.resolve(file);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}`);
  writeFileSync(temp, String(pid), { mode: 0o644 });
  renameSync(temp, target);
}
