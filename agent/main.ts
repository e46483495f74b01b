// hull guest agent entry point (ESM, bundled to dist/agent.mjs): `node agent.mjs [options]`, options in start.ts.
// In the guest it runs as PID 1 when the image has no start-up snapshot (see agent/snapshot.ts).
import { prepareAgent, runAgent } from './start.js';

// `__hullT0` (scripts/bundle.mjs banner): ms since the process started when the bundle's first line ran; `modules`:
// all modules evaluated.
declare const __hullT0: number | undefined;
const marks: Record<string, number> = { firstJs: typeof __hullT0 === 'number' ? __hullT0 : NaN, modules: performance.now() };
prepareAgent();
marks['prepared'] = performance.now();
runAgent(process.argv.slice(2), marks);
