// What a Docker user types, and what they expect back: exec's arguments and exit
// codes, a closed pipe, multi-name rm, filters, Go templates, combined flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TSNET_BIN, skipReason, withHost, type TestHost } from './harness.js';

const skip = skipReason();

/** tsnet inside the host with its stdout into a shell pipeline (`| head -1`, `| true`). */
function piped(h: TestHost, args: string[], consumer: string): { code: number; out: string; err: string } {
  const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, '--', 'bash', '-c', `${[process.execPath, TSNET_BIN, ...args].map(q).join(' ')} 2>/tmp/tsnet-pipe-err.$$ | ${consumer}; code=\${PIPESTATUS[0]}; cat /tmp/tsnet-pipe-err.$$ >&2; rm -f /tmp/tsnet-pipe-err.$$; exit $code`], {
    encoding: 'utf8',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: '', TSNET_ROOT: h.root, TSNET_RUN: h.runDir, TSNET_FIREWALL: h.firewall },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test('sandbox exec: everything after the sandbox is the command\'s; 125 for tsnet, 126/127 for the command, 128+N for a signal', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', '--network', 'none', 's']);
    const df = h.tsnet(['sandbox', 'exec', 's', 'df', '-h']);
    assert.equal(df.code, 0, df.stderr);
    assert.match(df.stdout, /Filesystem/, 'df ran (its -h is not tsnet\'s help)');
    assert.doesNotMatch(df.stdout, /Usage: tsnet/);
    assert.match(h.tsnet(['sandbox', 'exec', 's', 'ip', '--help']).stderr + h.tsnet(['sandbox', 'exec', 's', 'ip', '--help']).stdout, /Usage: ip/);
    assert.match(h.tsnet(['sandbox', 'exec', '--help']).stdout, /Usage: tsnet sandbox exec/, 'help before the sandbox name is tsnet\'s');
    assert.equal(h.tsnet(['sandbox', 'exec', 's', 'sh', '-c', 'exit 3']).code, 3);
    assert.equal(h.tsnet(['sandbox', 'exec', 's', 'sh', '-c', 'kill -TERM $$']).code, 143);
    const missing = h.tsnet(['sandbox', 'exec', 'nosuch', 'true']);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /sandbox nosuch not found/);
    assert.equal(h.tsnet(['sandbox', 'exec', 's']).code, 125, 'no command');
    assert.equal(h.tsnet(['sandbox', 'exec', 's', '/no/such/program']).code, 127);
    const noexec = join(h.dir, 'not-executable');
    writeFileSync(noexec, 'data\n', { mode: 0o644 });
    assert.equal(h.tsnet(['sandbox', 'exec', 's', noexec]).code, 126);
  }));

test('a closed stdout ends the output, not the command: no trace, the change is made, the exit code is the command\'s', { skip }, () =>
  withHost((h) => {
    for (let i = 0; i < 5; i++) h.ok(['network', 'create', `n${i}`]);
    const head = piped(h, ['network', 'ls'], 'head -1');
    assert.equal(head.code, 0);
    assert.equal(head.out, 'NETWORK ID     NAME     DRIVER   SCOPE\n');
    assert.equal(head.err, '');
    const create = piped(h, ['network', 'create', 'quiet'], 'true');
    assert.equal(create.code, 0, create.err);
    assert.equal(create.err, '');
    assert.match(h.ok(['network', 'ls', '-q', '-f', 'name=quiet']), /^[0-9a-f]{12}$/, 'the network was made');
    assert.equal(piped(h, ['network', 'inspect', 'quiet', 'n1', 'n2'], 'head -c 10').code, 0);
  }));

test('multi-name rm removes what it can, dependants first; reports each failure; -f ignores missing names', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'web']);
    h.ok(['sandbox', 'create', '--network', 'container:web', 'sidecar']);
    h.ok(['sandbox', 'create', '--network', 'none', 'other']);
    const r = h.tsnet(['sandbox', 'rm', 'web', 'nosuch', 'sidecar', 'other']);
    assert.equal(r.code, 3, 'non-zero: one name failed (not found)');
    assert.deepEqual(r.stdout.trim().split('\n'), ['web', 'sidecar', 'other'], 'the README\'s `sandbox rm web sidecar` works in that order');
    assert.match(r.stderr, /^Error: sandbox nosuch not found$/m);
    assert.equal(h.ok(['sandbox', 'ls', '-q']), '');
    h.ok(['network', 'create', 'a']);
    h.ok(['network', 'create', 'b']);
    h.ok(['sandbox', 'create', '--network', 'b', 'user']);
    const n = h.tsnet(['network', 'rm', 'a', 'b', 'bridge']);
    assert.equal(n.code, 5);
    assert.equal(n.stdout.trim(), 'a');
    assert.match(n.stderr, /network b has active endpoints \(user\)/);
    assert.match(n.stderr, /bridge is a pre-defined network/);
    // Names that cannot be an ID prefix: 'b2' once matched network b's random hex ID (1 run in 256).
    const f = h.tsnet(['network', 'rm', '-f', 'gone', 'nosuch-net']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(f.stdout, '');
  }));

test('ls: --filter/-f, -qf, Go templates, table templates, json with Docker\'s keys, --no-trunc; inspect -f; port PORT; labels without value', { skip }, () =>
  withHost((h) => {
    h.ok(['network', 'create', '--label', 'env', '--label', 'tier=web', 'front']);
    h.ok(['network', 'create', '--internal', 'back']);
    h.ok(['sandbox', 'create', '--network', 'front', '-p', '8070:80', 'web']);
    assert.equal(h.ok(['network', 'ls', '--filter', 'name=fro', '--format', '{{.Name}}']), 'front');
    assert.equal(h.ok(['network', 'ls', '-f', 'label=env', '--format', '{{.Name}} {{.Labels}}']), 'front env=,tier=web');
    assert.equal(h.ok(['network', 'ls', '-f', 'label=tier=web', '-f', 'driver=bridge', '--format', '{{.Name}}']), 'front');
    assert.equal(h.ok(['network', 'ls', '-f', 'type=builtin', '--format', '{{.Name}}']), 'bridge\nhost\nnone');
    assert.equal(h.ok(['network', 'ls', '-f', 'dangling=true', '--format', '{{.Name}}']), 'back');
    const id = h.ok(['network', 'ls', '-qf', 'name=back']);
    assert.match(id, /^[0-9a-f]{12}$/);
    assert.match(h.ok(['network', 'ls', '-q', '--no-trunc', '-f', `id=${id}`]), /^[0-9a-f]{64}$/);
    assert.equal(h.ok(['network', 'ls', '--format', 'table {{.Name}}\\t{{.Internal}}', '-f', 'name=back']), 'NAME   INTERNAL\nback   true');
    const json = JSON.parse(h.ok(['network', 'ls', '--format', 'json', '-f', 'name=back']));
    assert.deepEqual(Object.keys(json).sort(), ['CreatedAt', 'Driver', 'ID', 'IPv6', 'Internal', 'Labels', 'Name', 'Scope']);
    assert.equal(json.Internal, 'true', 'string values, as docker network ls --format json');
    const bad = h.tsnet(['network', 'ls', '-f', 'colour=red']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid filter 'colour'/);
    assert.equal(h.ok(['network', 'inspect', '-f', '{{.Name}} {{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}}', 'back']).split(' ')[1], 'true');
    assert.equal(h.ok(['network', 'inspect', '--format', '{{index .Labels "tier"}}', 'front']), 'web');
    assert.equal(h.tsnet(['network', 'inspect', '--format', 'table', 'front']).code, 2, 'inspect takes templates, not tables');
    assert.equal(h.ok(['sandbox', 'inspect', '-f', '{{range .Networks}}{{.IPAddress}}{{end}}', 'web']).split('.')[0], h.inspect('sandbox', 'web').Networks.front.IPAddress.split('.')[0]);
    assert.equal(h.ok(['sandbox', 'ls', '-f', 'network=front', '--format', '{{.Name}} {{.Ports}}']), 'web 0.0.0.0:8070->80/tcp, [::]:8070->80/tcp');
    assert.match(h.ok(['sandbox', 'ls', '--no-trunc', '-q']), /^[0-9a-f]{64}$/);
    assert.equal(h.ok(['port', 'web', '80']), '0.0.0.0:8070\n[::]:8070', 'docker port web 80');
    assert.equal(h.ok(['port', 'web']), '80/tcp -> 0.0.0.0:8070\n80/tcp -> [::]:8070');
  }));

test('messages name the flag the user gave; refusals Docker makes too', { skip }, () =>
  withHost((h) => {
    const expose = h.tsnet(['sandbox', 'create', '-P', '--expose', '99999', 'x']);
    assert.equal(expose.code, 2);
    assert.match(expose.stderr, /in --expose 99999/);
    const two = h.tsnet(['network', 'create', '--subnet', '10.30.0.0/24', '--subnet', '10.31.0.0/24', 'two']);
    assert.equal(two.code, 12, 'unsupported, as Docker\'s bridge driver says');
    assert.match(two.stderr, /doesn't support multiple IPv4 subnets/);
    h.ok(['network', 'create', '--subnet', '10.32.0.0/24', '--ip-range', '10.32.0.8/30', 'small']);
    for (const n of ['a', 'b', 'c', 'd']) h.ok(['sandbox', 'create', '--network', 'small', n]);
    const full = h.tsnet(['sandbox', 'create', '--network', 'small', 'e']);
    assert.equal(full.code, 7);
    assert.match(full.stderr, /--ip-range 10\.32\.0\.8\/30 of subnet 10\.32\.0\.0\/24/);
  }));
