// CNI plugin binary: tsnet-portmap (drop-in for the reference "portmap").
import { runCniPlugin } from '../src/compose/cni.js';

await runCniPlugin('tsnet-portmap');
