// The one error a config file can cause: one line naming the file, the key (when there is one) and the problem, e.g.
// `/etc/hull/config.toml: vm.memory_mib: must be a whole number from 128 to 1048576, got "lots"`. Raised before
// anything exists, so a bad file leaves nothing behind.
import { HullError } from '../errors.js';

export class ConfigError extends HullError {
  constructor(
    readonly file: string,
    /** `section.key`, `[section]`, or undefined for the file as a whole (unreadable, not TOML). */
    readonly key: string | undefined,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super('invalid-argument', key === undefined ? `${file}: ${problem}` : `${file}: ${key}: ${problem}`, options);
    this.name = 'ConfigError';
  }
}
