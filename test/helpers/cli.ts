/** Node arguments that run the CLI from source (tests); the consumer check runs the compiled `dist/cli/bin.js`. */
export const CLI: readonly string[] = ['--import', 'tsx', 'src/cli/bin.ts'];
