import { defineConfig } from 'vitest/config';

export default defineConfig({
  define: { __FH_VERSION__: JSON.stringify('0.0.0-test') },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 10_000,
  },
});
