// Registers hull as a Docker runtime: merges `"runtimes": {"hull": {"path": HULL}}` into daemon.json, keeping every
// other key and runtime as it is. Writes only when something changes, through a temporary file renamed over the old
// one (same mode), so a crash never leaves half a file. A daemon.json that is not a JSON object is left untouched and
// the script exits 1 with one line. scripts/setup.sh runs it when dockerd is installed (docs/docker.md).
//
//   node scripts/register-docker.mjs [--file /etc/docker/daemon.json] [--path /usr/local/bin/hull] [--name hull]
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    file: { type: 'string', default: '/etc/docker/daemon.json' },
    path: { type: 'string', default: '/usr/local/bin/hull' },
    name: { type: 'string', default: 'hull' },
  },
});
const { file, name } = values;
const runtime = { path: values.path };

function fail(message) {
  process.stderr.write(`register-docker: ${file}: ${message}\n`);
  process.exit(1);
}

let config = {};
let mode = 0o644;
let text;
try {
  text = readFileSync(file, 'utf8');
  mode = statSync(file).mode & 0o7777;
} catch (err) {
  if (err.code !== 'ENOENT') fail(`cannot be read (${err.code ?? err.message})`);
}
if (text !== undefined && text.trim() !== '') {
  try {
    config = JSON.parse(text);
  } catch (err) {
    fail(`is not valid JSON (${err.message}); left as it is: add "runtimes": {"${name}": {"path": "${runtime.path}"}} by hand`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) fail('is not a JSON object; left as it is');
  if (config.runtimes !== undefined && (typeof config.runtimes !== 'object' || config.runtimes === null || Array.isArray(config.runtimes))) {
    fail('"runtimes" is not an object; left as it is');
  }
}

const current = config.runtimes?.[name];
if (current && JSON.stringify(current) === JSON.stringify(runtime)) {
  process.stdout.write(`register-docker: ${file} already registers "${name}"\n`);
  process.exit(0);
}
config.runtimes = { ...(config.runtimes ?? {}), [name]: runtime };
mkdirSync(path.dirname(file), { recursive: true });
const tmp = `${file}.hull-${process.pid}.tmp`;
writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode });
renameSync(tmp, file);
process.stdout.write(`register-docker: ${file} registers "${name}" → ${runtime.path}${current ? ' (replaced an older entry)' : ''}\n`);
