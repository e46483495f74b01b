// The container process lifecycle (shim/sandbox/process-state.ts): every move of the table works, every other one
// is refused with a failed-precondition that names the process and both statuses; and the runc front end's
// moveStatus (shim/runc/state.ts) applies the same table to state.json's status.
import { describe, expect, it } from 'vitest';
import { HullError } from '../../shim/errors.js';
import { moveStatus, type ContainerState } from '../../shim/runc/state.js';
import { canTransition, checkTransition, ProcessState, TRANSITIONS, type ProcessStatus } from '../../shim/sandbox/process-state.js';

const ALL: ProcessStatus[] = ['creating', 'created', 'running', 'paused', 'stopped'];

const ALLOWED: Array<[ProcessStatus, ProcessStatus]> = [
  ['creating', 'created'],
  ['creating', 'stopped'],
  ['created', 'running'],
  ['created', 'stopped'],
  ['running', 'paused'],
  ['running', 'stopped'],
  ['paused', 'running'],
  ['paused', 'stopped'],
];

function refusal(fn: () => void): HullError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HullError);
    return err as HullError;
  }
  throw new Error('the move was not refused');
}

describe('the transition table', () => {
  it('has every status, and exactly the lifecycle moves', () => {
    expect([...TRANSITIONS.keys()].sort()).toEqual([...ALL].sort());
    const table = ALL.flatMap((from) => [...TRANSITIONS.get(from)!].map((to) => [from, to]));
    expect(table.sort()).toEqual([...ALLOWED].sort());
  });

  it.each(ALLOWED)('allows %s → %s', (from, to) => {
    expect(canTransition(from, to)).toBe(true);
    expect(() => checkTransition('container c1', from, to)).not.toThrow();
    const state = new ProcessState('container c1', from);
    state.moveTo(to);
    expect(state.status).toBe(to);
    expect(state.is(to)).toBe(true);
  });

  it('refuses every other move, the same status included', () => {
    const allowed = new Set(ALLOWED.map(([from, to]) => `${from}>${to}`));
    for (const from of ALL) {
      for (const to of ALL) {
        if (allowed.has(`${from}>${to}`)) continue;
        expect(canTransition(from, to), `${from} → ${to}`).toBe(false);
        const err = refusal(() => checkTransition('container c1', from, to));
        expect(err.kind).toBe('failed-precondition');
        expect(err.message).toBe(`container c1 cannot go from ${from} to ${to}`);
      }
    }
  });
});

describe('ProcessState', () => {
  it('walks created → running → paused → running → stopped', () => {
    const state = new ProcessState('container c1', 'created');
    for (const next of ['running', 'paused', 'running', 'stopped'] as const) state.moveTo(next);
    expect(state.status).toBe('stopped');
    expect(state.is('created', 'stopped')).toBe(true);
    expect(state.is('running', 'paused')).toBe(false);
  });

  it('refuses a bad move with a one-line message naming the process, and keeps its status', () => {
    const state = new ProcessState('process exec1 of container c1', 'stopped');
    const err = refusal(() => state.moveTo('running'));
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe('process exec1 of container c1 cannot go from stopped to running');
    expect(state.status).toBe('stopped');
  });

  it('refuses a second start and a pause of a process that never started', () => {
    const started = new ProcessState('container c1', 'created');
    started.moveTo('running');
    expect(refusal(() => started.moveTo('running')).message).toBe('container c1 cannot go from running to running');
    const created = new ProcessState('container c2', 'created');
    expect(refusal(() => created.moveTo('paused')).message).toBe('container c2 cannot go from created to paused');
    expect(created.status).toBe('created');
  });
});

describe('moveStatus (runc front end)', () => {
  const record = (status: ContainerState['status']): ContainerState =>
    ({ id: 'c1', status }) as ContainerState;

  it('moves state.json through creating → created → running → stopped', () => {
    const state = record('creating');
    for (const next of ['created', 'running', 'stopped'] as const) {
      moveStatus(state, next);
      expect(state.status).toBe(next);
    }
  });

  it('refuses a start after the exit was recorded, and leaves the status alone', () => {
    const state = record('stopped');
    const err = refusal(() => moveStatus(state, 'running'));
    expect(err.kind).toBe('failed-precondition');
    expect(err.message).toBe('container c1 cannot go from stopped to running');
    expect(state.status).toBe('stopped');
  });
});
