import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real processes; a slow CI machine needs room.
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
