// The tsnet command line: Docker's words and flags where Docker has them.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { installPlugins, writeExampleConflist } from '../cni/install.js';
import { compose, defaultSettings, type FirewallChoice, type Composed, type Settings } from '../compose/index.js';
import { resolve } from 'node:path';
import { createRootLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { asTsnetError, InvalidConfigError, NotFoundError } from '../errors.js';
import { flagHelp, keyValues, parseArgs, type FlagSpec } from './args.js';
import { processIo } from './io.js';
import { ociMain } from './oci.js';
import { list, reportRemoval, str, type Command, type Env } from './command.js';
import { CONTAINER_COMMANDS } from './containers.js';
import { portLine, renderInspect, renderList, shortId, type ListSpec } from './output.js';
import { parseFilterArgs } from '../api/filters.js';
import type { SandboxSummary } from '../api/api.js';
import { constants as osConstants } from 'node:os';

const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'root', type: 'string', help: 'state directory (env TSNET_ROOT, default /var/lib/tsnet)', metavar: 'DIR' },
  { name: 'run-dir', type: 'string', help: 'runtime directory for namespace pins (env TSNET_RUN, default /run/tsnet)', metavar: 'DIR' },
  { name: 'firewall', type: 'string', help: 'firewall backend: auto, iptables, nftables or none (env TSNET_FIREWALL)', metavar: 'NAME' },
  { name: 'log-level', short: 'l', type: 'string', help: `log level: ${LOG_LEVELS.join(', ')} (env TSNET_LOG_LEVEL, default warn)`, metavar: 'LEVEL' },
  { name: 'help', short: 'h', type: 'bool', help: 'show help' },
  { name: 'version', short: 'v', type: 'bool', help: 'print the version' },
];

const LIST_FLAGS: FlagSpec[] = [
  { name: 'filter', short: 'f', type: 'list', help: 'filter rows: KEY=VALUE (repeatable)', metavar: 'KEY=VALUE' },
  { name: 'format', type: 'string', help: "'table' (default), 'json' (a line per row), a Go template, or 'table TEMPLATE'", metavar: 'FMT' },
  { name: 'quiet', short: 'q', type: 'bool', help: 'only print IDs' },
  { name: 'no-trunc', type: 'bool', help: 'do not truncate IDs' },
];
const INSPECT_FORMAT: FlagSpec = { name: 'format', short: 'f', type: 'string', help: "a Go template ('{{.Name}}'), or 'json' (one line per object); default: a JSON array", metavar: 'FMT' };
const FORCE_RM: FlagSpec = { name: 'force', short: 'f', type: 'bool', help: 'do not fail for names that do not exist' };
const CONNECT_FLAGS: FlagSpec[] = [
  { name: 'ip', type: 'string', help: 'static IPv4 address', metavar: 'ADDR' },
  { name: 'ip6', type: 'string', help: 'static IPv6 address', metavar: 'ADDR' },
  { name: 'ifname', type: 'string', help: 'interface name inside the sandbox (default eth0, eth1, ...)', metavar: 'NAME' },
  { name: 'publish', short: 'p', type: 'list', help: 'publish a port: [hostIP:][hostPort[-end]:]containerPort[-end][/tcp|udp|sctp]', metavar: 'SPEC' },
  { name: 'publish-all', short: 'P', type: 'bool', help: 'publish every --expose port on an ephemeral host port' },
  { name: 'expose', type: 'list', help: 'a container port for -P: PORT[-END][/PROTO]', metavar: 'PORT' },
];

const connectOpts = (flags: Record<string, unknown>) => ({
  ip: str(flags.ip),
  ip6: str(flags.ip6),
  ifname: str(flags.ifname),
  publish: list(flags.publish),
  publishAll: Boolean(flags['publish-all']),
  expose: list(flags.expose),
});

const NETWORK_LIST: ListSpec = {
  columns: [['ID', 'NETWORK ID'], ['Name', 'NAME'], ['Driver', 'DRIVER'], ['Scope', 'SCOPE']],
  headers: { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE', IPv6: 'IPV6', Internal: 'INTERNAL', Labels: 'LABELS', CreatedAt: 'CREATED AT' },
  idField: 'ID',
};
const SANDBOX_LIST: ListSpec = {
  columns: [['ID', 'SANDBOX ID'], ['Name', 'NAME'], ['Kind', 'KIND'], ['Networks', 'NETWORKS'], ['SandboxKey', 'KEY']],
  headers: { ID: 'SANDBOX ID', Name: 'NAME', Kind: 'KIND', Networks: 'NETWORKS', SandboxKey: 'KEY', CreatedAt: 'CREATED AT', Ports: 'PORTS' },
  idField: 'ID',
};
const labelText = (l: Record<string, string>) => Object.entries(l).map(([k, v]) => `${k}=${v}`).join(',');

const NETWORK_COMMANDS: Command[] = [
  {
    path: 'network create',
    usage: 'tsnet network create [OPTIONS] NETWORK',
    summary: 'Create a network',
    minArgs: 1,
    maxArgs: 1,
    flags: [
      { name: 'driver', short: 'd', type: 'string', help: 'driver that manages the network (default bridge)', metavar: 'NAME' },
      { name: 'subnet', type: 'list', help: 'subnet in CIDR form (repeat for IPv4 + IPv6)', metavar: 'CIDR' },
      { name: 'gateway', type: 'list', help: 'gateway for a subnet', metavar: 'ADDR' },
      { name: 'ip-range', type: 'list', help: 'allocate container addresses from a sub-range', metavar: 'CIDR' },
      { name: 'aux-address', type: 'list', help: 'reserve an address: NAME=ADDR', metavar: 'NAME=ADDR' },
      { name: 'ipv6', type: 'bool', help: 'enable IPv6 (a ULA /64 is chosen unless --subnet gives one)' },
      { name: 'internal', type: 'bool', help: 'no external access: no masquerade, no default route' },
      { name: 'mtu', type: 'string', help: 'MTU of the bridge and veths', metavar: 'BYTES' },
      { name: 'opt', short: 'o', type: 'list', help: 'driver option KEY=VALUE', metavar: 'KEY=VALUE' },
      { name: 'label', type: 'list', help: 'metadata KEY=VALUE', metavar: 'KEY=VALUE' },
    ],
    async run({ flags, positionals }, env) {
      const mtu = str(flags.mtu);
      if (mtu !== undefined && !/^\d+$/.test(mtu)) throw new InvalidConfigError(`--mtu "${mtu}" must be a whole number`);
      const net = await env.tsnet().api.createNetwork({
        name: positionals[0]!,
        driver: str(flags.driver),
        subnets: list(flags.subnet),
        gateways: list(flags.gateway),
        ipRanges: list(flags['ip-range']),
        auxAddresses: keyValues(list(flags['aux-address']), 'aux-address'),
        ipv6: Boolean(flags.ipv6),
        internal: Boolean(flags.internal),
        mtu: mtu === undefined ? undefined : Number(mtu),
        options: keyValues(list(flags.opt), 'option'),
        labels: keyValues(list(flags.label), 'label', { bare: true }),
      });
      env.out(net.id);
      return 0;
    },
  },
  {
    path: 'network ls',
    usage: 'tsnet network ls [OPTIONS]',
    summary: 'List networks',
    maxArgs: 0,
    flags: LIST_FLAGS,
    async run({ flags }, env) {
      const nets = await env.tsnet().api.listNetworks(parseFilterArgs(list(flags.filter)));
      const id = (x: string) => (flags['no-trunc'] ? x : shortId(x));
      const rows = nets.map((n) => ({ ID: id(n.id), Name: n.name, Driver: n.driver, Scope: n.scope, IPv6: String(n.ipv6), Internal: String(n.internal), Labels: labelText(n.labels), CreatedAt: n.created }));
      for (const l of renderList(rows, NETWORK_LIST, { format: str(flags.format), quiet: Boolean(flags.quiet) })) env.out(l);
      return 0;
    },
  },
  {
    path: 'network inspect',
    usage: 'tsnet network inspect NETWORK [NETWORK...]',
    summary: 'Show networks in detail (JSON, the keys of docker network inspect)',
    minArgs: 1,
    flags: [INSPECT_FORMAT],
    async run({ flags, positionals }, env) {
      for (const l of renderInspect(await env.tsnet().api.inspectNetworks(positionals), str(flags.format))) env.out(l);
      return 0;
    },
  },
  {
    path: 'network rm',
    usage: 'tsnet network rm [OPTIONS] NETWORK [NETWORK...]',
    summary: 'Remove networks (each that can be; the others are reported)',
    minArgs: 1,
    flags: [FORCE_RM],
    async run({ flags, positionals }, env) {
      return reportRemoval(await env.tsnet().api.removeNetworks(positionals, { force: Boolean(flags.force) }), env);
    },
  },
  {
    path: 'network prune',
    usage: 'tsnet network prune [OPTIONS]',
    summary: 'Remove all networks without endpoints (predefined ones stay)',
    maxArgs: 0,
    flags: [{ name: 'force', short: 'f', type: 'bool', help: 'do not ask (tsnet never asks: accepted for Docker compatibility)' }],
    async run(_a, env) {
      const removed = await env.tsnet().api.pruneNetworks();
      if (removed.length) env.out(['Deleted Networks:', ...removed].join('\n'));
      return 0;
    },
  },
  {
    path: 'network connect',
    usage: 'tsnet network connect [OPTIONS] NETWORK SANDBOX',
    summary: 'Connect a sandbox to a network',
    minArgs: 2,
    maxArgs: 2,
    flags: CONNECT_FLAGS,
    async run({ flags, positionals }, env) {
      await env.tsnet().api.connect(positionals[0]!, positionals[1]!, connectOpts(flags));
      return 0;
    },
  },
  {
    path: 'network disconnect',
    usage: 'tsnet network disconnect NETWORK SANDBOX',
    summary: 'Disconnect a sandbox from a network',
    minArgs: 2,
    maxArgs: 2,
    flags: [{ name: 'force', short: 'f', type: 'bool', help: 'accepted for Docker compatibility' }],
    async run({ positionals }, env) {
      await env.tsnet().api.disconnect(positionals[0]!, positionals[1]!);
      return 0;
    },
  },
  {
    path: 'sandbox create',
    usage: 'tsnet sandbox create [OPTIONS] NAME',
    summary: 'Create a sandbox (a network namespace) and connect it',
    minArgs: 1,
    maxArgs: 1,
    flags: [
      { name: 'network', type: 'string', help: "network to join: bridge (default), none, host, a network name, or container:SANDBOX", metavar: 'NET' },
      { name: 'netns', type: 'string', help: 'use an existing namespace by path instead of creating one', metavar: 'PATH' },
      { name: 'pid', type: 'string', help: 'use the network namespace of a process', metavar: 'PID' },
      ...CONNECT_FLAGS,
    ],
    async run({ flags, positionals }, env) {
      const pid = str(flags.pid);
      if (pid !== undefined && !/^\d+$/.test(pid)) throw new InvalidConfigError(`--pid "${pid}" is not a process id`);
      const sbx = await env.tsnet().api.createSandbox({
        name: positionals[0]!,
        network: str(flags.network),
        netnsPath: str(flags.netns),
        pid: pid === undefined ? undefined : Number(pid),
        ...connectOpts(flags),
      });
      env.out(sbx.id);
      return 0;
    },
  },
  {
    path: 'sandbox ls',
    usage: 'tsnet sandbox ls [OPTIONS]',
    summary: 'List sandboxes',
    maxArgs: 0,
    flags: LIST_FLAGS,
    async run({ flags }, env) {
      const all = await env.tsnet().api.listSandboxes(parseFilterArgs(list(flags.filter)));
      const id = (x: string) => (flags['no-trunc'] ? x : shortId(x));
      // Docker's PORTS column: "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp".
      const ports = (x: SandboxSummary) => x.ports.map((p) => `${portLine(p, true)}->${p.containerPort}/${p.proto}`).join(', ');
      const rows = all.map((x) => ({ ID: id(x.id), Name: x.name, Kind: x.kind, Networks: x.networks.join(',') || '-', SandboxKey: x.key, CreatedAt: x.created, Ports: ports(x) }));
      for (const l of renderList(rows, SANDBOX_LIST, { format: str(flags.format), quiet: Boolean(flags.quiet) })) env.out(l);
      return 0;
    },
  },
  {
    path: 'sandbox inspect',
    usage: 'tsnet sandbox inspect SANDBOX [SANDBOX...]',
    summary: 'Show sandboxes in detail (JSON)',
    minArgs: 1,
    flags: [INSPECT_FORMAT],
    async run({ flags, positionals }, env) {
      for (const l of renderInspect(await env.tsnet().api.inspectSandboxes(positionals), str(flags.format))) env.out(l);
      return 0;
    },
  },
  {
    path: 'sandbox rm',
    usage: 'tsnet sandbox rm [OPTIONS] SANDBOX [SANDBOX...]',
    summary: 'Disconnect and remove sandboxes (each that can be; the others are reported)',
    minArgs: 1,
    flags: [FORCE_RM],
    async run({ flags, positionals }, env) {
      return reportRemoval(await env.tsnet().api.removeSandboxes(positionals, { force: Boolean(flags.force) }), env);
    },
  },
  {
    path: 'sandbox exec',
    usage: 'tsnet sandbox exec SANDBOX COMMAND [ARG...]',
    summary: "Run a command inside a sandbox's network namespace (exit 125: tsnet failed, 126: not executable, 127: not found, 128+N: signal N)",
    minArgs: 1,
    flags: [],
    async run({ positionals, rest }, env) {
      try {
        const key = await env.tsnet().api.sandboxKey(positionals[0]!);
        const cmd = [...positionals.slice(1), ...rest];
        if (!cmd.length) throw new InvalidConfigError('sandbox exec needs a command to run');
        return await new Promise((resolveExit, reject) => {
          // The shell's exec gives the command's own failures Docker's codes: 126 cannot execute, 127 not found.
          const child = spawn('nsenter', [`--net=${key}`, '--', '/bin/sh', '-c', 'exec "$0" "$@"', ...cmd], { stdio: 'inherit' });
          child.on('error', (err) => reject(new NotFoundError(`nsenter (util-linux) is needed for exec: ${err.message}`)));
          child.on('close', (code, sig) => resolveExit(code ?? 128 + (sig ? osConstants.signals[sig] : 0)));
        });
      } catch (err) {
        // tsnet's own failures are 125, so they cannot be mistaken for the command's exit code.
        env.err(`Error: ${asTsnetError(err).message}`);
        return 125;
      }
    },
  },
  {
    path: 'port ',
    usage: 'tsnet port SANDBOX [PRIVATE_PORT[/PROTO]]',
    summary: "List a sandbox's published ports, like docker port",
    minArgs: 1,
    maxArgs: 2,
    flags: [],
    async run({ positionals }, env) {
      const r = await env.tsnet().api.ports(positionals[0]!, positionals[1]);
      if (positionals[1] && !r.ports.length) throw new NotFoundError(`no public port '${positionals[1]}' published for ${positionals[0]}`);
      for (const p of r.ports) env.out(portLine(p, Boolean(positionals[1])));
      // Listed as published, but not held: said loudly, on stderr (stdout stays `docker port`'s).
      for (const l of r.lost) env.err(`Warning: ${l}`);
      return 0;
    },
  },
  {
    path: 'cni install',
    usage: 'tsnet cni install [--bin-dir DIR] [--conf-dir DIR]',
    summary: 'Install the tsnet CNI plugins into a CNI bin directory, and an example conflist',
    maxArgs: 0,
    flags: [
      { name: 'bin-dir', type: 'string', help: 'CNI bin directory (default /opt/cni/bin)', metavar: 'DIR' },
      { name: 'conf-dir', type: 'string', help: 'also write 10-tsnet.conflist (bridge + portmap) into this CNI conf directory', metavar: 'DIR' },
    ],
    async run({ flags }, env) {
      const bundleDir = fileURLToPath(new URL('../../cni-plugins', import.meta.url));
      const confDir = str(flags['conf-dir']);
      if (confDir !== undefined && !confDir.startsWith('/')) throw new InvalidConfigError(`--conf-dir must be an absolute path (got ${confDir})`);
      const clientPath = fileURLToPath(new URL('../../../native/build/Release/tsnet-cni-client', import.meta.url));
      // The plugins keep their locks, sockets and marks under the run directory this installation uses.
      const runDir = env.settings().runDir;
      for (const p of installPlugins({ bundleDir, binDir: str(flags['bin-dir']) ?? '/opt/cni/bin', nodePath: process.execPath, clientPath, runDir })) env.out(p);
      if (confDir !== undefined) env.out(writeExampleConflist(confDir));
      return 0;
    },
  },
  {
    path: 'system reconcile',
    usage: 'tsnet system reconcile',
    summary: 'Bring the kernel back to the recorded state now (every changing command does this first)',
    maxArgs: 0,
    flags: [],
    async run(_a, env) {
      await env.tsnet().api.reconcile();
      return 0;
    },
  },
];

const COMMANDS: Command[] = [...NETWORK_COMMANDS, ...CONTAINER_COMMANDS];

function version(): string {
  return (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;
}

function mainHelp(): string {
  const groups = ['container', 'image', 'network', 'sandbox', 'port', 'cni', 'system'];
  const lines = ['Usage: tsnet [GLOBAL OPTIONS] COMMAND', '', 'Container networking for Linux: bridge, host, null and container networks over netlink.', ''];
  for (const g of groups) {
    lines.push(`${g[0]!.toUpperCase()}${g.slice(1)} commands:`);
    for (const c of COMMANDS.filter((x) => !x.hidden && (x.group ?? x.path.split(' ')[0]) === g)) lines.push(`  ${c.path.padEnd(20)} ${c.summary}`);
    lines.push('');
  }
  lines.push('Global options:', flagHelp(GLOBAL_FLAGS), '', "Run 'tsnet COMMAND --help' for a command's options.");
  return lines.join('\n');
}

function commandHelp(c: Command): string {
  return [`Usage: ${c.usage}`, '', c.summary, ...(c.flags.length ? ['', 'Options:', flagHelp(c.flags)] : [])].join('\n');
}

export { processIo };

export async function main(argv: string[], io = processIo()): Promise<number> {
  let level: LogLevel = (process.env.TSNET_LOG_LEVEL as LogLevel) || 'warn';
  // The OCI runtime has runc's command line (its own global flags) and needs none of the network stack.
  if (argv[0] === 'runtime') return ociMain(argv.slice(1), io);
  try {
    // Global flags come before the command words.
    let i = 0;
    const globalArgs: string[] = [];
    while (i < argv.length && argv[i]!.startsWith('-')) {
      const a = argv[i]!;
      globalArgs.push(a);
      const spec = GLOBAL_FLAGS.find((f) => a === `--${f.name}` || a === `-${f.short}`);
      if (spec && spec.type !== 'bool' && !a.includes('=')) globalArgs.push(argv[++i] ?? '');
      i++;
    }
    const g = parseArgs(globalArgs, GLOBAL_FLAGS);
    if (g.flags.version) {
      io.out(`tsnet ${version()}`);
      return 0;
    }
    const words = argv.slice(i);
    if (g.flags['log-level'] !== undefined) level = String(g.flags['log-level']) as LogLevel;
    if (!LOG_LEVELS.includes(level)) throw new InvalidConfigError(`unknown log level "${level}" (use ${LOG_LEVELS.join(', ')})`);
    if (!words.length || words[0] === 'help' || g.flags.help) {
      io.out(mainHelp());
      return words.length || g.flags.help ? 0 : 2;
    }
    const alias = (w: string | undefined) => (w === 'remove' ? 'rm' : w === 'list' ? 'ls' : w);
    // Top-level commands (path "port ") take every following word as arguments.
    const single = COMMANDS.find((c) => c.path === `${words[0]} `);
    const path = single ? single.path : `${words[0]} ${alias(words[1])}`;
    const cmd = single ?? COMMANDS.find((c) => c.path === path);
    if (!cmd) {
      const group = COMMANDS.filter((c) => c.path.startsWith(`${words[0]} `));
      if (group.length && (words[1] === undefined || words[1] === '--help' || words[1] === '-h')) {
        io.out([`Usage: tsnet ${words[0]} COMMAND`, '', ...group.map((c) => `  ${c.path.padEnd(20)} ${c.summary}`)].join('\n'));
        return words[1] ? 0 : 2;
      }
      throw new InvalidConfigError(`unknown command "${words.slice(0, 2).join(' ')}": see 'tsnet --help'`);
    }
    const cmdArgs = words.slice(single ? 1 : 2);
    // -h/--help is tsnet's only before "--" and, for exec, before the sandbox name (the rest is the command's).
    const ownArgs = cmdArgs.slice(0, cmdArgs.includes('--') ? cmdArgs.indexOf('--') : undefined);
    const firstPositional = ownArgs.findIndex((a) => !a.startsWith('-'));
    const helpScope = cmd.path === 'sandbox exec' || cmd.restAfter !== undefined ? (firstPositional < 0 ? ownArgs : ownArgs.slice(0, firstPositional)) : ownArgs;
    if (helpScope.includes('--help') || helpScope.includes('-h') || (cmd.path === 'sandbox exec' && ownArgs.length && ownArgs.every((a) => a === '-h' || a === '--help'))) {
      io.out(commandHelp(cmd));
      return 0;
    }
    const parsed = parseArgs(cmdArgs, cmd.flags, { stopAtFirstPositional: cmd.path === 'sandbox exec', restAfter: cmd.restAfter });
    if (cmd.path === 'sandbox exec') {
      parsed.rest = [...parsed.positionals.slice(1), ...parsed.rest];
      parsed.positionals = parsed.positionals.slice(0, 1);
    }
    if (cmd.minArgs !== undefined && parsed.positionals.length < cmd.minArgs) throw new InvalidConfigError(`"tsnet ${cmd.path}" requires at least ${cmd.minArgs} argument(s): ${cmd.usage}`);
    if (cmd.maxArgs !== undefined && parsed.positionals.length > cmd.maxArgs) throw new InvalidConfigError(`"tsnet ${cmd.path}" accepts at most ${cmd.maxArgs} argument(s): ${cmd.usage}`);

    const fw = str(g.flags.firewall);
    if (fw !== undefined && !['auto', 'iptables', 'nftables', 'none'].includes(fw)) throw new InvalidConfigError(`unknown --firewall "${fw}" (use auto, iptables, nftables or none)`);
    const log = createRootLogger(level);
    let composed: Composed | undefined;
    let settings: Settings | undefined;
    const env: Env = {
      settings: () => {
        if (!settings) {
          const d = defaultSettings();
          settings = {
            ...d,
            root: resolve(str(g.flags.root) ?? d.root),
            runDir: resolve(str(g.flags['run-dir']) ?? d.runDir),
            firewall: (fw as FirewallChoice | undefined) ?? d.firewall,
            notice: (m) => io.err(`Warning: ${m}`),
          };
        }
        return settings;
      },
      tsnet: () => (composed ??= compose(env.settings(), log)),
      out: io.out,
      err: io.err,
    };
    return await cmd.run(parsed, env);
  } catch (err) {
    const e = asTsnetError(err);
    io.err(`Error: ${e.message}`);
    if (level === 'debug' || level === 'trace') io.err(String((err as Error)?.stack ?? err));
    return e.mapping.exit;
  }
}
