import { defineConfig } from 'vitest/config';

// Integration tests start real processes; a slow CI machine needs room.
const shared = { testTimeout: 60_000, hookTimeout: 30_000 };

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: 'suite', include: ['test/**/*.test.ts'], exclude: ['test/load.test.ts'], sequence: { groupOrder: 0 } } },
      // The load test compares how many rounds fast and slow clients get in a few seconds: it runs
      // after the rest, alone, so that other test files do not take the CPU it measures.
      { test: { ...shared, name: 'load', include: ['test/load.test.ts'], sequence: { groupOrder: 1 } } },
    ],
  },
});
