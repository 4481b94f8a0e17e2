#!/usr/bin/env node
// tsnet CLI entry point (compiled code lives in dist/).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
