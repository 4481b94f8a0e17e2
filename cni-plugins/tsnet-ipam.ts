// CNI plugin binary: tsnet-ipam (drop-in for the reference "host-local").
import { runCniPlugin } from '../src/compose/cni.js';

await runCniPlugin('tsnet-ipam');
