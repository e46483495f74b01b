import { invalidArgument } from './errors.js';

// runc accepts the same alphabet; the length cap keeps every socket path in the sandbox dir under the 108-byte
// sun_path limit with the default root.
const ID_PATTERN = /^[A-Za-z0-9_.-]+$/;
export const MAX_ID_LENGTH = 64;

export function validateId(id: string | undefined): string {
  if (id === undefined || id === '') throw invalidArgument('container id is required');
  if (!ID_PATTERN.test(id)) {
    throw invalidArgument(`invalid container id "${id}": only characters [A-Za-z0-9_.-] are allowed`);
  }
  if (id === '.' || id === '..') throw invalidArgument(`invalid container id "${id}"`);
  if (id.length > MAX_ID_LENGTH) {
    throw invalidArgument(`invalid container id "${id.slice(0, 16)}…": longer than ${MAX_ID_LENGTH} characters`);
  }
  return id;
}
