// Typed errors of the agent. Each is a TtrpcError, so the code the host sees is chosen where the error is raised
// (unknown container → NotFound, bad spec → InvalidArgument, …) and the ttrpc server carries it unchanged.
import { TtrpcError } from '../protocol/errors.js';
import { Code } from '../protocol/ttrpc/codes.js';

/** The OCI spec or a request field is unusable (InvalidArgument). */
export class SpecError extends TtrpcError {
  constructor(message: string) {
    super(Code.InvalidArgument, message);
    this.name = 'SpecError';
  }
}

export class NotFoundError extends TtrpcError {
  constructor(message: string) {
    super(Code.NotFound, message);
    this.name = 'NotFoundError';
  }
}

export class AlreadyExistsError extends TtrpcError {
  constructor(message: string) {
    super(Code.AlreadyExists, message);
    this.name = 'AlreadyExistsError';
  }
}

/** The container or process is in the wrong state for the call (FailedPrecondition). */
export class StateError extends TtrpcError {
  constructor(message: string) {
    super(Code.FailedPrecondition, message);
    this.name = 'StateError';
  }
}

/** The container-init helper reported `error <msg>` or died during setup/exec (FailedPrecondition). */
export class HelperError extends TtrpcError {
  constructor(message: string) {
    super(Code.FailedPrecondition, message);
    this.name = 'HelperError';
  }
}

/** A startContainer hook could not run, failed or timed out (FailedPrecondition): the container is not started. */
export class HookError extends TtrpcError {
  constructor(message: string) {
    super(Code.FailedPrecondition, message);
    this.name = 'HookError';
  }
}

export class InternalError extends TtrpcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.Internal, message, options);
    this.name = 'InternalError';
  }
}
