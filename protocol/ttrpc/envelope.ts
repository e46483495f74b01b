// The ttrpc envelope messages (ttrpc request.proto, google.rpc.Status), with the wire field numbers of the reference.
// Defined as bundled .proto text so the module works unchanged in vitest, tsc and the esbuild bundle.
import protobuf from 'protobufjs';
import { ProtocolError } from '../errors.js';

const ENVELOPE_PROTO = `
syntax = "proto3";
package ttrpc;
message Request {
  string service = 1;
  string method = 2;
  bytes payload = 3;
  int64 timeout_nano = 4;
  repeated KeyValue metadata = 5;
}
message Response {
  Status status = 1;
  bytes payload = 2;
}
message KeyValue {
  string key = 1;
  string value = 2;
}
// google.rpc.Status; the package name does not reach the wire, only the field numbers do.
message Status {
  int32 code = 1;
  string message = 2;
  repeated Any details = 3;
}
// google.protobuf.Any
message Any {
  string type_url = 1;
  bytes value = 2;
}
`;

const root = protobuf.parse(ENVELOPE_PROTO, { keepCase: false }).root;
const RequestType = root.lookupType('ttrpc.Request');
const ResponseType = root.lookupType('ttrpc.Response');

export interface KeyValue {
  key: string;
  value: string;
}

export interface RequestMessage {
  service: string;
  method: string;
  payload: Buffer;
  /** 0 = no deadline. Nanoseconds, as a JS number (exact below 2^53 ns ≈ 104 days). */
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface StatusMessage {
  code: number;
  message: string;
}

export interface ResponseMessage {
  /** Absent means OK (the Go client treats a missing status as success). */
  status?: StatusMessage;
  payload: Buffer;
}

const toObjectOptions: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true };

/** protobufjs hands out Buffer in Node, Uint8Array elsewhere; callers always get a Buffer. */
export function asBuffer(bytes: Uint8Array | undefined | null): Buffer {
  if (!bytes) return Buffer.alloc(0);
  if (Buffer.isBuffer(bytes)) return bytes;
  // An absent bytes field decodes to protobufjs's shared default, a plain empty array (Go peers omit empty payloads).
  if (!(bytes instanceof Uint8Array)) return Buffer.from(bytes as ArrayLike<number>);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeRequest(req: RequestMessage): Buffer {
  return asBuffer(RequestType.encode(RequestType.fromObject(req)).finish());
}

export function decodeRequest(data: Buffer): RequestMessage {
  let obj: Record<string, unknown>;
  try {
    obj = RequestType.toObject(RequestType.decode(data), toObjectOptions);
  } catch (err) {
    throw new ProtocolError(`undecodable ttrpc request: ${(err as Error).message}`, { cause: err });
  }
  return {
    service: String(obj.service),
    method: String(obj.method),
    payload: asBuffer(obj.payload as Uint8Array),
    timeoutNano: Number(obj.timeoutNano),
    metadata: (obj.metadata as KeyValue[]).map((kv) => ({ key: String(kv.key), value: String(kv.value) })),
  };
}

export function encodeResponse(res: ResponseMessage): Buffer {
  return asBuffer(ResponseType.encode(ResponseType.fromObject(res)).finish());
}

export function decodeResponse(data: Buffer): ResponseMessage {
  let msg: protobuf.Message & { status?: { code?: number; message?: string } | null; payload?: Uint8Array };
  try {
    msg = ResponseType.decode(data) as typeof msg;
  } catch (err) {
    throw new ProtocolError(`undecodable ttrpc response: ${(err as Error).message}`, { cause: err });
  }
  const status = msg.status ? { code: msg.status.code ?? 0, message: msg.status.message ?? '' } : undefined;
  return { status, payload: asBuffer(msg.payload) };
}
