// Payload conversion between plain JS objects and protobufjs reflection types, shared by client and server:
// int64 as JS numbers, bytes as Buffer, absent fields filled with their proto3 defaults.
import type protobuf from 'protobufjs';
import { asBuffer } from './envelope.js';

export const conversionOptions: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true };

export function encodeMessage(type: protobuf.Type, value: object): Buffer {
  const err = type.verify(value);
  if (err) throw new TypeError(`${type.name}: ${err}`);
  return asBuffer(type.encode(type.fromObject(value)).finish());
}

export function decodeMessage(type: protobuf.Type, data: Buffer): Record<string, unknown> {
  return type.toObject(type.decode(data), conversionOptions);
}
