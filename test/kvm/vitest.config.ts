import { defineConfig } from 'vitest/config';

// The KVM suite (npm run test:kvm, through test/kvm/run.mjs): only test/kvm/*.kvm.ts, which the main config's
// `test/**/*.test.ts` never matches, one file at a time (each boots VMs), with a real boot's time per test.
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/kvm/**/*.kvm.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
