// The "nothing changed" fast path shared by the firewall backends. Every nftables
// transaction in a namespace (iptables-nft's included) bumps the ruleset
// generation. After a check, the mark records the generation and a hash of what
// was wanted; a later reconcile with the same generation and the same wish can
// skip reading the kernel. The mark lives in the run directory: a reboot forgets it.
import { createHash } from 'node:crypto';
import { dirname } from 'node:path';
import type { FileOps } from '../system/kernel.js';

interface Mark {
  gen: number;
  key: string;
  backend: string;
  /** What was wanted (and so is in the kernel) at `gen`. */
  desired?: unknown;
}

export class GenerationMark {
  constructor(
    private readonly backend: string,
    private readonly generation: (() => Promise<number | undefined>) | undefined,
    /** Where the mark is kept; none: never trusted (every check reads the kernel). */
    private readonly file: { files: FileOps; path: string } | undefined,
  ) {}

  private read(): Mark | undefined {
    if (!this.file) return undefined;
    try {
      const text = this.file.files.read(this.file.path);
      return text === undefined ? undefined : (JSON.parse(text) as Mark);
    } catch {
      return undefined; // unreadable or torn: no mark, the kernel is read
    }
  }

  private write(m: Mark | undefined): void {
    if (!this.file) return;
    const { files, path } = this.file;
    files.mkdir(dirname(path));
    // Written in place, not replaced: a torn mark fails to parse, which only costs
    // one reading of the kernel.
    files.write(path, m ? JSON.stringify(m) : '{}');
  }

  clear(): void {
    this.write(undefined);
  }

  /**
   * Runs check (which returns how many nftables transactions it committed) unless
   * the mark proves nothing changed. When nothing but our own wish changed, check
   * gets the previous wish: the kernel holds exactly that, so the backend can plan
   * the difference without reading the kernel (O(change), not O(ruleset)).
   * `trusted` = false (e.g. legacy iptables, whose rules live outside nftables)
   * never records a mark.
   */
  async guard<T>(desired: T, check: (previous: T | undefined) => Promise<number | { commits: number; trusted: boolean }>): Promise<{ changed: boolean }> {
    const key = createHash('sha256').update(JSON.stringify(desired)).digest('hex').slice(0, 16);
    const g0 = this.generation ? await this.generation() : undefined;
    const m = this.read();
    const unchanged = g0 !== undefined && m !== undefined && m.gen === g0 && m.backend === this.backend;
    if (unchanged && m.key === key) return { changed: false };
    const r = await check(unchanged ? (m.desired as T | undefined) : undefined);
    const { commits, trusted } = typeof r === 'number' ? { commits: r, trusted: true } : r;
    const g1 = this.generation ? await this.generation() : undefined;
    // Trust the mark only if our own commits explain every generation step since g0.
    const explained = trusted && g0 !== undefined && g1 !== undefined && g1 - g0 === commits;
    this.write(explained ? { gen: g1!, key, backend: this.backend, desired } : undefined);
    return { changed: commits > 0 };
  }
}
