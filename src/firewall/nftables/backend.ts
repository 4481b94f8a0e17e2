// The nftables backend: `nft list table inet tsnet` shows what is there; the
// difference is applied as one `nft -f -` transaction. As with iptables, the
// nftables generation recorded after a check lets an unchanged ruleset skip it.
import type { ExecRunner } from '../../system/kernel.js';
import type { Logger } from '../../log.js';
import type { FirewallBackend, FwState } from '../backend.js';
import { CommandError } from '../../errors.js';
import { parseNftTable } from './parse.js';
import { TABLE, listedFrom, planNft } from './render.js';
import { GenerationMark } from '../mark.js';

export class NftablesBackend implements FirewallBackend {
  readonly name = 'nftables' as const;
  constructor(
    private readonly exec: ExecRunner,
    private readonly log: Logger,
    private readonly mark: GenerationMark,
  ) {}

  private async list() {
    try {
      return parseNftTable((await this.exec.run(['nft', 'list', 'table', ...TABLE.split(' ')])).stdout);
    } catch (err) {
      if (err instanceof CommandError && /No such file or directory/.test(err.stderr)) return undefined;
      throw err;
    }
  }

  async reconcile(desired: FwState): Promise<{ changed: boolean }> {
    return this.mark.guard(desired, async (previous) => {
      const script = planNft(desired, previous ? listedFrom(previous) : await this.list());
      if (!script) return 0;
      this.log.debug({ script }, 'nft transaction');
      await this.exec.run(['nft', '-f', '-'], { input: script });
      return 1; // one nft transaction = one generation step
    });
  }

  async removeAll(): Promise<void> {
    if (await this.list()) await this.exec.run(['nft', 'delete', 'table', ...TABLE.split(' ')]);
    this.mark.clear();
  }
}
