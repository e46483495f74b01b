// Loads hull's .proto text for the containerd side (task service, events, metrics) into one protobufjs Root, with
// google.protobuf.{Any,Timestamp,Empty} from proto/wkt.proto. The text is imported with `?raw`, so vitest and the
// esbuild bundle read the same files. Field names are camelCase in JS (container_id → containerId).
import protobuf from 'protobufjs';
import eventsText from './proto/events.proto?raw';
import metricsText from './proto/metrics.proto?raw';
import shimText from './proto/shim.proto?raw';
import taskTypesText from './proto/task-types.proto?raw';
import ttrpcEventsText from './proto/ttrpc-events.proto?raw';
import typesText from './proto/types.proto?raw';
import wktText from './proto/wkt.proto?raw';

export const TASK_SERVICE = 'containerd.task.v2.Task';
export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

let root: protobuf.Root | undefined;

export function containerdProto(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  for (const text of [wktText, typesText, taskTypesText, shimText, eventsText, ttrpcEventsText, metricsText]) {
    protobuf.parse(text, r, { keepCase: false });
  }
  r.resolveAll();
  root = r;
  return r;
}

export function messageType(name: string): protobuf.Type {
  return containerdProto().lookupType(name);
}

export function taskService(): protobuf.Service {
  return containerdProto().lookupService(TASK_SERVICE);
}

export function eventsService(): protobuf.Service {
  return containerdProto().lookupService(EVENTS_SERVICE);
}

/** containerd.v1.types.Status */
export const TaskStatus = {
  UNKNOWN: 0,
  CREATED: 1,
  RUNNING: 2,
  STOPPED: 3,
  PAUSED: 4,
  PAUSING: 5,
} as const;
export type TaskStatusValue = (typeof TaskStatus)[keyof typeof TaskStatus];

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export function toTimestamp(date: Date): Timestamp {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export interface AnyMessage {
  typeUrl: string;
  value: Buffer;
}

/** Packs a message of `typeName` (e.g. containerd.events.TaskExit) into a google.protobuf.Any, as containerd's typeurl does. */
export function packAny(typeName: string, value: object): AnyMessage {
  const type = messageType(typeName);
  const err = type.verify(value);
  if (err) throw new TypeError(`${typeName}: ${err}`);
  return { typeUrl: typeName, value: Buffer.from(type.encode(type.fromObject(value)).finish()) };
}

export function encode(typeName: string, value: object): Buffer {
  const type = messageType(typeName);
  const err = type.verify(value);
  if (err) throw new TypeError(`${typeName}: ${err}`);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

export function decode(typeName: string, data: Uint8Array): Record<string, unknown> {
  const type = messageType(typeName);
  return type.toObject(type.decode(data), { longs: Number, defaults: true, arrays: true });
}
