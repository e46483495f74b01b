// Typed errors of the ttrpc layer. A TtrpcError carries a wire status code; handlers throw it to choose the code the
// peer sees, and clients receive it when the peer answers with a non-OK status.
import { Code, codeName } from './ttrpc/codes.js';

export class TtrpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TtrpcError';
  }

  /** "NotFound: container abc not found" — for logs and CLI messages. */
  override toString(): string {
    return `${codeName(this.code)}: ${this.message}`;
  }
}

/** The connection ended (peer closed, socket error, protocol violation) while calls were pending or being made. */
export class ConnectionClosedError extends TtrpcError {
  constructor(message = 'ttrpc connection closed', options?: { cause?: unknown }) {
    super(Code.Unavailable, message, options);
    this.name = 'ConnectionClosedError';
  }
}

/** The peer broke the wire protocol (bad frame, oversize frame, undecodable envelope). */
export class ProtocolError extends TtrpcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.Internal, message, options);
    this.name = 'ProtocolError';
  }
}

