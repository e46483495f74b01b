import { defineConfig } from 'vitest/config';

// Integration tests boot real microVMs under TCG on a 2-core machine: run files one at a time so boots do not
// starve each other, and give each test the time a real boot takes here (no hidden retries).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
