// Loads and validates an OCI bundle. Every failure names the bundle and the field, in one line.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { invalidArgument } from './errors.js';
import { hooksOf } from './hooks.js';
import type { OciSpec } from './oci-spec.js';
import { specAjvOptions, specSchema } from './spec-schema.js';
import { validate as precompiledValidator } from './spec-validator-precompiled.js';

export interface Bundle {
  /** Absolute path of the bundle directory. */
  dir: string;
  spec: OciSpec;
  /** The raw config.json text: sent to the agent as is, so the guest reads the same bytes we validated. */
  specJson: string;
  /** Absolute path of the container root on the host. */
  rootfs: string;
}

const SUPPORTED_OCI_MAJOR = 1;
/**
 * The bundles carry it compiled (ajv's standalone code, made by scripts/bundle.mjs): compiling it at each start cost
 * ~17 ms of every `hull run` and shim create. From source (the tests) it is compiled at first use.
 */
let compiled: ValidateFunction | undefined;
const validate = (data: unknown): boolean => (compiled ??= precompiledValidator ?? new Ajv(specAjvOptions).compile(specSchema))(data);
const validationErrors = () => compiled?.errors;

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function checkOciVersion(version: string): void {
  const match = /^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.+-]+)?$/.exec(version);
  if (!match || Number(match[1]) !== SUPPORTED_OCI_MAJOR) {
    throw invalidArgument(`config.json: unsupported ociVersion "${version}" (hull supports ${SUPPORTED_OCI_MAJOR}.x)`);
  }
}

function hasDotDot(p: string): boolean {
  return p.split('/').includes('..');
}

function checkPaths(spec: OciSpec, requireProcess: boolean): void {
  if (requireProcess && !spec.process) throw invalidArgument('config.json: field /process is required');
  if (spec.process && !path.isAbsolute(spec.process.cwd)) {
    throw invalidArgument(`config.json: process.cwd "${spec.process.cwd}" must be an absolute path`);
  }
  for (const [i, mount] of (spec.mounts ?? []).entries()) {
    if (!path.isAbsolute(mount.destination) || hasDotDot(mount.destination)) {
      throw invalidArgument(
        `config.json: mounts[${i}].destination "${mount.destination}" must be an absolute path without ".."`,
      );
    }
  }
}

function resolveRootfs(dir: string, rootPath: string): string {
  if (!path.isAbsolute(rootPath)) {
    const resolved = path.resolve(dir, rootPath);
    if (resolved !== dir && !resolved.startsWith(dir + path.sep)) {
      throw invalidArgument(`config.json: root.path "${rootPath}" escapes the bundle directory ${dir}`);
    }
    return resolved;
  }
  return path.normalize(rootPath);
}

export function loadBundle(bundleDir: string, options: { requireProcess: boolean }): Bundle {
  const dir = path.resolve(bundleDir);
  if (!isDirectory(dir)) throw invalidArgument(`bundle directory ${dir} does not exist`);
  const configPath = path.join(dir, 'config.json');
  let specJson: string;
  try {
    specJson = readFileSync(configPath, 'utf8');
  } catch {
    throw invalidArgument(`config.json not found in bundle ${dir}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(specJson);
  } catch (err) {
    throw invalidArgument(`config.json in ${dir} is not valid JSON: ${(err as Error).message}`);
  }
  if (!validate(parsed)) {
    const first = validationErrors()?.[0];
    const field = first?.instancePath || '/';
    const detail = first?.keyword === 'required' ? `is missing ${String(first.params.missingProperty)}` : first?.message;
    throw invalidArgument(`config.json: field ${field} ${detail ?? 'is invalid'}`);
  }
  const spec = parsed as OciSpec;
  checkOciVersion(spec.ociVersion);
  checkPaths(spec, options.requireProcess);
  hooksOf(spec); // its errors name the hook's field; run by create before a monitor exists
  const rootfs = resolveRootfs(dir, spec.root.path);
  if (!isDirectory(rootfs)) throw invalidArgument(`rootfs ${rootfs} does not exist or is not a directory`);
  return { dir, spec, specJson, rootfs };
}
