// Reads hull's config file once per process: /etc/hull/config.toml, or the file $HULL_CONFIG names (tests, other
// installs). No file at the default path means built-in defaults; a file $HULL_CONFIG names must exist (a typo there
// would otherwise be silent). Cheap on purpose, since every `hull` call and the containerd shim run it: a stat when
// there is no file, else one read and a TOML parse of a few lines. The result (or the error) is kept, so the eager
// load at a command's start and every later lookup agree.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from './errors.js';
import { checkConfig, type FileConfig } from './schema.js';

export const CONFIG_PATH_DEFAULT = '/etc/hull/config.toml';
export const CONFIG_ENV = 'HULL_CONFIG';

export interface LoadedConfig {
  /** The file looked for (absolute). */
  file: string;
  /** Whether it existed (false: every setting is its built-in default or its environment variable). */
  found: boolean;
  /** What chose the file: $HULL_CONFIG or the default path. */
  chosenBy: 'env' | 'default';
  values: FileConfig;
}

const empty = (): FileConfig => ({ vm: {}, pool: {}, log: {}, paths: {}, vmm: {} });

/** The config file of this process: $HULL_CONFIG (resolved) when set and not empty, else the default path. */
export function configPath(env: NodeJS.ProcessEnv = process.env): { file: string; chosenBy: 'env' | 'default' } {
  const override = env[CONFIG_ENV];
  return override ? { file: path.resolve(override), chosenBy: 'env' } : { file: CONFIG_PATH_DEFAULT, chosenBy: 'default' };
}

/** The first line of a TOML syntax error, with where it is. */
function syntaxProblem(err: TomlError): string {
  const what = err.message.split('\n')[0]?.replace(/^Invalid TOML document:\s*/, '') ?? 'invalid TOML';
  return `not valid TOML at line ${err.line}, column ${err.column}: ${what}`;
}

/** Reads and checks one config file; throws ConfigError (one line) for anything but a missing default file. */
export function readConfig(file: string, chosenBy: 'env' | 'default'): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && chosenBy === 'default') return { file, found: false, chosenBy, values: empty() };
    const why = code === 'ENOENT' ? `does not exist (named by $${CONFIG_ENV})` : `cannot be read (${code ?? (err as Error).message})`;
    throw new ConfigError(file, undefined, why, { cause: err });
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(text);
  } catch (err) {
    if (err instanceof TomlError) throw new ConfigError(file, undefined, syntaxProblem(err), { cause: err });
    throw err;
  }
  return { file, found: true, chosenBy, values: checkConfig(file, doc) };
}

let cached: { config: LoadedConfig } | { error: unknown } | undefined;

/** This process's config, read on first use; a bad file throws the same ConfigError on every call. */
export function hullConfig(): LoadedConfig {
  if (cached === undefined) {
    const { file, chosenBy } = configPath();
    try {
      cached = { config: readConfig(file, chosenBy) };
    } catch (error) {
      cached = { error };
    }
  }
  if ('error' in cached) throw cached.error;
  return cached.config;
}

/** Forgets the cached config (tests that change $HULL_CONFIG). */
export function resetHullConfig(): void {
  cached = undefined;
}
