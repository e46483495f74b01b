// Publishes task events to containerd over ttrpc (containerd.services.events.ttrpc.v1.Events/Forward at
// TTRPC_ADDRESS). One loop sends them in the order they were queued; a failed send is retried with back-off on a
// fresh connection (5 attempts, 5 s per call, like containerd's own publisher) before the event is dropped and logged.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { TtrpcClient } from '../../protocol/ttrpc/client.js';
import { EVENTS_SERVICE, eventsService, packAny, toTimestamp } from './protos.js';

export const Topic = {
  create: '/tasks/create',
  start: '/tasks/start',
  exit: '/tasks/exit',
  delete: '/tasks/delete',
  execAdded: '/tasks/exec-added',
  execStarted: '/tasks/exec-started',
  oom: '/tasks/oom',
  paused: '/tasks/paused',
  resumed: '/tasks/resumed',
} as const;

/** Which message each topic carries (its full name is also the Any type URL). */
export const TOPIC_TYPES: Record<string, string> = {
  [Topic.create]: 'containerd.events.TaskCreate',
  [Topic.start]: 'containerd.events.TaskStart',
  [Topic.exit]: 'containerd.events.TaskExit',
  [Topic.delete]: 'containerd.events.TaskDelete',
  [Topic.execAdded]: 'containerd.events.TaskExecAdded',
  [Topic.execStarted]: 'containerd.events.TaskExecStarted',
  [Topic.oom]: 'containerd.events.TaskOOM',
  [Topic.paused]: 'containerd.events.TaskPaused',
  [Topic.resumed]: 'containerd.events.TaskResumed',
};

export interface EventSink {
  /** Queues an event; never throws (an event that cannot be encoded is a bug, logged). */
  publish(topic: string, event: object): void;
  /** Resolves when everything queued so far was sent or given up on. */
  flush(): Promise<void>;
  close(): void;
}

const NAMESPACE_METADATA = 'containerd-namespace-ttrpc';

export class TtrpcEventPublisher implements EventSink {
  private readonly queue: Array<{ topic: string; payload: Buffer; queuedAt: Date }> = [];
  private client: TtrpcClient | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly forward = eventsService().methods['Forward']!;

  constructor(
    private readonly address: string,
    private readonly namespace: string,
    private readonly log: Logger,
    private readonly options: { attempts?: number; timeoutMs?: number; backoffMs?: number } = {},
  ) {}

  publish(topic: string, event: object): void {
    if (this.closed) return;
    const typeName = TOPIC_TYPES[topic];
    try {
      if (!typeName) throw new Error(`unknown topic ${topic}`);
      const queuedAt = new Date();
      const envelope = {
        timestamp: toTimestamp(queuedAt),
        namespace: this.namespace,
        topic,
        event: packAny(typeName, event),
      };
      const type = this.forward.resolvedRequestType!;
      const payload = Buffer.from(type.encode(type.fromObject({ envelope })).finish());
      this.queue.push({ topic, payload, queuedAt });
      this.log.debug({ topic, event }, 'event queued');
    } catch (err) {
      this.log.error({ topic, err: (err as Error).message }, 'cannot encode event');
      return;
    }
    this.running ??= this.loop().finally(() => (this.running = undefined));
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  close(): void {
    this.closed = true;
    this.client?.close();
  }

  private async loop(): Promise<void> {
    while (this.queue.length > 0) {
      const item = this.queue[0]!;
      await this.send(item.topic, item.payload);
      this.queue.shift();
    }
  }

  private async send(topic: string, payload: Buffer): Promise<void> {
    const attempts = this.options.attempts ?? 5;
    let delay = this.options.backoffMs ?? 100;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const client = await this.connect();
        await client.callRaw(EVENTS_SERVICE, 'Forward', payload, {
          timeoutMs: this.options.timeoutMs ?? 5000,
          metadata: { [NAMESPACE_METADATA]: this.namespace },
        });
        this.log.debug({ topic }, 'event published');
        return;
      } catch (err) {
        this.client?.close();
        this.client = undefined;
        if (attempt === attempts || this.closed) {
          this.log.error({ topic, err: (err as Error).message, attempts: attempt }, 'event dropped: containerd did not take it');
          return;
        }
        await sleep(delay);
        delay *= 2;
      }
    }
  }

  private async connect(): Promise<TtrpcClient> {
    if (this.client && !this.client.closed) return this.client;
    const path = this.address.replace(/^unix:\/\//, '');
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(path);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    this.client = new TtrpcClient(sock);
    return this.client;
  }
}
