// The iptables backend: reads our chains with iptables-save, and applies any
// difference as one iptables-restore --noflush transaction per address family.
import type { ExecRunner } from '../../system/ports.js';
import type { Logger } from '../../log.js';
import type { FirewallBackend, FwState } from '../backend.js';
import { parseIptablesSave } from './parse.js';
import { CHAIN, planRestore, renderDesired } from './render.js';

const TOOLS = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
} as const;

export class IptablesBackend implements FirewallBackend {
  readonly name = 'iptables' as const;
  constructor(
    private readonly exec: ExecRunner,
    private readonly log: Logger,
  ) {}

  private async reconcileFamily(desired: FwState, family: 4 | 6): Promise<boolean> {
    const tools = TOOLS[family];
    const saved = parseIptablesSave((await this.exec.run([tools.save])).stdout);
    const text = planRestore(renderDesired(desired, family), saved);
    if (!text) return false;
    this.log.debug({ family, text }, 'iptables transaction');
    await this.exec.run([tools.restore, '-w', '--noflush'], { input: text });
    return true;
  }

  async reconcile(desired: FwState): Promise<{ changed: boolean }> {
    const [a, b] = await Promise.all([this.reconcileFamily(desired, 4), this.reconcileFamily(desired, 6)]);
    return { changed: a || b };
  }

  async removeAll(): Promise<void> {
    await this.reconcile({ networks: [] });
    for (const family of [4, 6] as const) {
      const saved = parseIptablesSave((await this.exec.run([TOOLS[family].save, '-t', 'filter'])).stdout);
      const user = saved.get('filter')?.rules.get(CHAIN.USER);
      // The operator's hook chain goes only when it holds nothing of theirs.
      if (user && user.every((r) => r === '-j RETURN')) {
        await this.exec.run([TOOLS[family].restore, '-w', '--noflush'], { input: `*filter\n:${CHAIN.USER} - [0:0]\n-X ${CHAIN.USER}\nCOMMIT\n` });
      }
    }
  }
}
