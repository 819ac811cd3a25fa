#!/usr/bin/env node
// The CLI is written in TypeScript; tsx compiles it on the fly.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
// Exit explicitly: pools and timers of a failed command must not keep the process alive or reset the code.
process.exit(code);
