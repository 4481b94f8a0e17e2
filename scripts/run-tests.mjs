// Runs the compiled tests with node's test runner. Fails when no test file is
// found, and (as root) fails when the real host's namespaces, links or firewall
// differ after the run from what they were before it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const groups = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'golden', 'contract', 'integration', 'cni', 'runtime'];

function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
}
const files = groups.flatMap((g) => walk(join(root, 'dist', 'test', g))).sort();
if (!files.length) {
  console.error(`no test files found for ${groups.join(', ')} under dist/test (did the build run?)`);
  process.exit(1);
}

const isRoot = process.getuid?.() === 0;
const tryRun = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return `(${cmd} unavailable)`;
  }
};
// Counters and timestamps change on their own; everything else must not.
const hostView = () => ({
  netns: tryRun('ip', ['netns', 'list']),
  links: tryRun('ip', ['-o', 'link', 'show']).replace(/\s+link\/\S+ .*$/gm, ''),
  iptables: tryRun('iptables-save', []).replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, ''),
  ip6tables: tryRun('ip6tables-save', []).replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, ''),
  nft: tryRun('nft', ['list', 'ruleset']),
  // Mount points (not their ids, which a remount changes), cgroups at the top of each
  // hierarchy, and live (not zombie: this VM's pid 1 reaps nothing) tsnet monitors.
  mounts: tryRun('findmnt', ['-rn', '-o', 'TARGET,FSTYPE']).split('\n').sort().join('\n'),
  cgroups: tryRun('sh', ['-c', 'ls -d /sys/fs/cgroup/*/*/ /sys/fs/cgroup/*/ 2>/dev/null']),
  monitors: tryRun('sh', ['-c', "ps -eo stat=,comm= | awk '$1 !~ /^Z/ && $2 ~ /^tsnet-(monitor|init)/' | wc -l"]),
});
const before = isRoot ? hostView() : undefined;

const res = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit', cwd: root, env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
let code = res.status ?? 1;

if (before) {
  const after = hostView();
  for (const k of Object.keys(before)) {
    if (before[k] !== after[k]) {
      console.error(`\nHOST CHANGED: the test run left the real host's ${k} different:\n--- before\n${before[k]}\n--- after\n${after[k]}`);
      code = code || 1;
    }
  }
}
process.exit(code);
