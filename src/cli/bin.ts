#!/usr/bin/env node
import { main } from './main.ts';

const code = await main(process.argv.slice(2));
// Exit explicitly: pools and timers of a failed command must not keep the process alive or reset the code.
process.exit(code);
