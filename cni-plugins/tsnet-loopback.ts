// CNI plugin binary: tsnet-loopback (drop-in for the reference "loopback").
import { runCniPlugin } from '../src/compose/cni.js';

await runCniPlugin('tsnet-loopback');
