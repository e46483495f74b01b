// Field checks for the OCI spec (JSON from the host): each names the JSON path in its one-line SpecError.
import { SpecError } from './errors.js';

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function asObject(v: unknown, at: string): Record<string, unknown> {
  if (!isObject(v)) throw new SpecError(`${at} must be an object`);
  return v;
}

export function arr(v: unknown, at: string): unknown[] {
  if (!Array.isArray(v)) throw new SpecError(`${at} must be an array`);
  return v;
}

export function str(v: unknown, at: string): string {
  if (typeof v !== 'string') throw new SpecError(`${at} must be a string`);
  if (v.includes('\0')) throw new SpecError(`${at} must not contain NUL`);
  return v;
}

export function strArr(v: unknown, at: string): string[] {
  return arr(v, at).map((s, i) => str(s, `${at}[${i}]`));
}

export function bool(v: unknown, at: string): boolean {
  if (typeof v !== 'boolean') throw new SpecError(`${at} must be true or false`);
  return v;
}

export function id(v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new SpecError(`${at} must be an integer id`);
  return v;
}

export function limit(v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (v < 2 ** 53 && !Number.isInteger(v))) {
    throw new SpecError(`${at} must be a non-negative integer`);
  }
  return v;
}

/** An array of at most `max` entries (the plan's bounds; the helper refuses more). */
export function arrMax(v: unknown, at: string, max: number): unknown[] {
  const a = arr(v, at);
  if (a.length > max) throw new SpecError(`${at} has ${a.length} entries; at most ${max} are supported`);
  return a;
}
