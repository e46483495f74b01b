// hull guest agent, start-up snapshot entry (bundled to dist/agent-snapshot.cjs; guest-image/build.sh runs
// `node --snapshot-blob agent.blob --build-snapshot agent-snapshot.cjs` with the guest's own node binary). Everything
// evaluated here — the bundled modules and prepareAgent() — is in the snapshot's heap, so the guest's
// `node --snapshot-blob /hull/agent.blob` starts serving without compiling or running it again.
// Nothing here may open fds, start timers or read the environment: that all happens in runAgent(), after
// deserialization.
import v8 from 'node:v8';
import { prepareAgent, runAgent } from './start.js';

prepareAgent();
v8.startupSnapshot.setDeserializeMainFunction(() => {
  // From a snapshot, process.argv is [node, ...args] (no script path).
  runAgent(process.argv.slice(1), { deserialized: performance.now() });
});
