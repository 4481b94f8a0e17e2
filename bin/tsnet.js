#!/usr/bin/env node
// tsnet CLI entry point. The build makes a one-file bundle of the CLI (faster to
// load); the unbundled modules serve when it is absent.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/src/cli/main.bundle.mjs', import.meta.url);
const { main } = await import(existsSync(bundle) ? bundle.href : '../dist/src/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
