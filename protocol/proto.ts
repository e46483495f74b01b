// Loads the agent API from protocol/proto/agent.proto. The text is imported with `?raw` (see proto-text.d.ts), so
// the same module works under vitest and inside the esbuild bundles that run on the host and in the guest.
import protobuf from 'protobufjs';
import agentProtoText from './proto/agent.proto?raw';

export const AGENT_SERVICE = 'hull.agent.v1.Agent';

/** Parses .proto text; field names become camelCase (container_id → containerId) in JS objects. */
export function parseProto(text: string): protobuf.Root {
  const root = protobuf.parse(text, { keepCase: false }).root;
  root.resolveAll();
  return root;
}

let agentRoot: protobuf.Root | undefined;

export function agentProto(): protobuf.Root {
  return (agentRoot ??= parseProto(agentProtoText));
}

export function agentService(): protobuf.Service {
  return agentProto().lookupService(AGENT_SERVICE);
}

export interface MethodTypes {
  requestType: protobuf.Type;
  responseType: protobuf.Type;
}

/** Request/response types of one method of a service (throws on an unknown method: a programming error). */
export function methodTypes(service: protobuf.Service, method: string): MethodTypes {
  const m = service.methods[method];
  if (!m) throw new Error(`${service.fullName} has no method ${method}`);
  m.resolve();
  return { requestType: m.resolvedRequestType!, responseType: m.resolvedResponseType! };
}
