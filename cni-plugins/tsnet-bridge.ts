// CNI plugin binary: tsnet-bridge (drop-in for the reference "bridge").
import { pluginMain } from '../src/cni/skel.js';
import { composeCni } from '../src/compose.js';
import { createRootLogger, type LogLevel } from '../src/log.js';

// Logs go to stderr only, and only when asked for: stdout carries the result.
const log = createRootLogger((process.env.TSNET_LOG_LEVEL as LogLevel) || 'silent', 'tsnet-bridge');
await pluginMain(composeCni(log)['tsnet-bridge']!());
