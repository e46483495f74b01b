// The shim's command line, in Go `flag` syntax as containerd writes it (runtime/v2/shim/util.go): single- or
// double-dash flags, `-name value` or `-name=value`, booleans without a value, flags end at the first non-flag
// argument (the action: start, delete) or at `--`.

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  /** start | delete | '' (the daemon itself). */
  action: string;
  /** Arguments after the action (ignored, as containerd's shims do). */
  rest: string[];
}

export class FlagError extends Error {
  override name = 'FlagError';
}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
};
const BOOL_FLAGS: Record<string, 'debug' | 'version'> = { debug: 'debug', v: 'version' };

function parseBool(name: string, value: string): boolean {
  // Go's strconv.ParseBool
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new FlagError(`invalid boolean value "${value}" for -${name}`);
}

export function parseShimFlags(argv: string[]): ShimFlags {
  const flags: ShimFlags = {
    namespace: '',
    address: '',
    publishBinary: '',
    id: '',
    bundle: '',
    socket: '',
    debug: false,
    version: false,
    action: '',
    rest: [],
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.length < 2 || arg[0] !== '-') break; // first non-flag: the action
    let name = arg.slice(arg[1] === '-' ? 2 : 1);
    if (name === '' || name[0] === '-' || name[0] === '=') throw new FlagError(`bad flag syntax: ${arg}`);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const boolKey = BOOL_FLAGS[name];
    if (boolKey) {
      flags[boolKey] = value === undefined ? true : parseBool(name, value);
      continue;
    }
    const key = STRING_FLAGS[name];
    if (!key) throw new FlagError(`flag provided but not defined: -${name}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
      value = argv[++i]!;
    }
    (flags as unknown as Record<string, string>)[key] = value;
  }
  const positional = argv.slice(i);
  flags.action = positional[0] ?? '';
  flags.rest = positional.slice(1);
  return flags;
}

/** The flags a daemon is re-executed with (everything but the action). */
export function daemonArgs(flags: ShimFlags): string[] {
  const args = ['-namespace', flags.namespace, '-address', flags.address, '-publish-binary', flags.publishBinary, '-id', flags.id];
  if (flags.bundle) args.push('-bundle', flags.bundle);
  if (flags.debug) args.push('-debug');
  return args;
}
