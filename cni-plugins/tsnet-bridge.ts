// CNI plugin binary: tsnet-bridge (drop-in for the reference "bridge").
import { runCniPlugin } from '../src/compose/cni.js';

await runCniPlugin('tsnet-bridge');
