// A stand-in for native/container-init (test/unit/fixtures/fake-container-init.sh) that speaks the same fd 3/4/5
// protocol but isolates nothing: the agent's tests and the fake VM run containers with it on the host.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'unit', 'fixtures', 'fake-container-init.sh');

/** Copies the fake into `dir` (so its executable bit does not depend on how the repo was checked out); its path. */
export function installFakeContainerInit(dir: string): string {
  const helperPath = path.join(dir, 'fake-container-init');
  writeFileSync(helperPath, readFileSync(FIXTURE));
  chmodSync(helperPath, 0o755);
  return helperPath;
}
