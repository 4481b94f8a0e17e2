#!/usr/bin/env node
// tsnet's OCI runtime with runc's command line, for engines that drive runc
// (containerd's BinaryName, podman --runtime): `tsnet-runc ARGS` is `tsnet runtime ARGS`.
import { runEntry } from './entry.js';

await runEntry('oci-main');
