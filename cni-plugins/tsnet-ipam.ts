// CNI plugin binary: tsnet-ipam (drop-in for the reference "host-local").
import { pluginMain } from '../src/cni/skel.js';
import { ipamPlugin } from '../src/cni/ipam.js';

await pluginMain(ipamPlugin());
