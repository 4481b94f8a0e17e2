#!/usr/bin/env node
// tsnet CLI entry point (bin/entry.js picks the bundle or the modules).
import { runEntry } from './entry.js';

await runEntry('main');
