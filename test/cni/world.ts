// A CNI world for plugin tests: the plugins installed in a temp dir (with their own
// run directory), a throwaway "host" namespace where they build bridges and rules,
// and container namespaces made on demand. done() removes all of it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { installCni, killProcessesIn } from '../integration/harness.js';

export type World = ReturnType<typeof world>;

/** opts.hostNs: build in an existing namespace (e.g. a TestHost's, to run the CLI beside the plugins). */
export function world(opts: { hostNs?: string } = {}) {
  const id = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnib-'));
  const bin = join(dir, 'bin');
  const run = join(dir, 'run');
  const r = installCni(bin, run);
  assert.equal(r.code, 0, r.stderr);
  const host = opts.hostNs ?? `tsnet-cnih-${id}`;
  const made: string[] = opts.hostNs ? [] : [host];
  if (!opts.hostNs) {
    spawnSync('ip', ['netns', 'add', host]);
    spawnSync('ip', ['-n', host, 'link', 'set', 'lo', 'up']);
  }
  const container = () => {
    const n = `tsnet-cnic-${id}-${made.length}`;
    spawnSync('ip', ['netns', 'add', n]);
    made.push(n);
    return n;
  };
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      cniVersion: '1.1.0', name: 'net1', type: 'tsnet-bridge', bridge: 'cni0', isGateway: true, isDefaultGateway: true, ipMasq: true,
      ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.88.0.0/16' }]], dataDir: join(dir, 'ipam') }, ...extra,
    });
  const envOf = (cmd: string, cid: string, netns: string | undefined, extraEnv: Record<string, string>) => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: '', CNI_COMMAND: cmd, CNI_CONTAINERID: cid, CNI_IFNAME: 'eth0', CNI_PATH: bin, ...extraEnv };
    if (netns) env.CNI_NETNS = `/run/netns/${netns}`;
    return env;
  };
  const parse = (stdout: string) => (stdout.trim() ? JSON.parse(stdout) : undefined);
  const call = (cmd: string, cid: string, netns: string | undefined, stdin: string, plugin = 'tsnet-bridge', extraEnv: Record<string, string> = {}) => {
    const res = spawnSync('nsenter', [`--net=/run/netns/${host}`, '--', join(bin, plugin)], { input: stdin, encoding: 'utf8', env: envOf(cmd, cid, netns, extraEnv) });
    return { code: res.status, out: parse(res.stdout), raw: res.stdout + res.stderr };
  };
  /** The same call without waiting (many at once, as an orchestrator starting pods). */
  const callAsync = (cmd: string, cid: string, netns: string | undefined, stdin: string, plugin = 'tsnet-bridge', extraEnv: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: any; raw: string }>((resolve) => {
      const c = spawn('nsenter', [`--net=/run/netns/${host}`, '--', join(bin, plugin)], { env: envOf(cmd, cid, netns, extraEnv) });
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (err += d));
      c.on('close', (code) => resolve({ code, out: parse(out), raw: out + err }));
      c.stdin.end(stdin);
    });
  const inHost = (...argv: string[]) => spawnSync('nsenter', [`--net=/run/netns/${host}`, '--', ...argv], { encoding: 'utf8' });
  const ipamFiles = () => (existsSync(join(dir, 'ipam', 'net1')) ? readdirSync(join(dir, 'ipam', 'net1')).filter((f) => /^\d/.test(f)) : []);
  const done = () => {
    killProcessesIn(`/run/netns/${host}`);
    for (const n of made.reverse()) spawnSync('ip', ['netns', 'del', n]);
    rmSync(dir, { recursive: true, force: true });
  };
  return { container, conf, call, callAsync, inHost, ipamFiles, done, host, dir, bin, run };
}

