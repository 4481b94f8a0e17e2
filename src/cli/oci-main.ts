// The tsnet-runc entry point: the OCI runtime alone, without the network stack.
import { processIo } from './io.js';
import { ociMain } from './oci.js';

export function main(argv: string[]): Promise<number> {
  return ociMain(argv, processIo());
}
