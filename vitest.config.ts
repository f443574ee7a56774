import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Vitest's default is one worker fewer than the CPUs: a single worker on a 2-core CI machine, where most test
    // time is spent in child processes (the CLI) that leave the other core idle. Two workers there, as many as the
    // CPUs beyond.
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
