// The OCI runtime (`tsnet runtime`, `tsnet-runc`) on the real kernel: bundles with a
// busybox rootfs, runc's life cycle and state JSON, hooks, a console socket, exec,
// pause, bad configs and a crash mid-create. Every container's cgroup lives under
// the test's own parent, its state under the test's directory, its mounts in the
// test's private mount namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxTar, pollUntil, runtimeSkip, withRuntime, type RuntimeHost } from './harness.js';
import { processGone } from '../integration/harness.js';

const skip = runtimeSkip('python3');
// Every test runs twice: through Node (bin/tsnet-runc.js) and through the native
// tsnet-runc, which hands each call to a warm server it starts for the state root.
const MODES = {
  node: [process.execPath, join(process.cwd(), 'bin', 'tsnet-runc.js')],
  native: [join(process.cwd(), 'native', 'build', 'Release', 'tsnet-runc')],
} as const;
type Mode = keyof typeof MODES;

interface Oci {
  run(args: string[], opts?: { input?: string }): { code: number; stdout: string; stderr: string };
  ok(args: string[]): string;
  bundle(name: string, edit?: (c: any) => void): string;
  stateDir: string;
  argv: readonly string[];
  /** Ends the warm server of this state root, if one started. */
  stop(): void;
}

/** tsnet-runc inside the test's host (network and mount namespaces), with its --root in the test directory. */
function oci(r: RuntimeHost, mode: Mode): Oci {
  const stateDir = join(r.h.dir, 'oci-state');
  const argv = MODES[mode];
  // stdout and stderr go through files: a container started here keeps them (as under runc), so pipes would not end.
  const run = (args: string[], opts: { input?: string } = {}) => {
    const [outFile, errFile] = [join(r.h.dir, 'runc.out'), join(r.h.dir, 'runc.err')];
    const [out, err] = [openSync(outFile, 'w'), openSync(errFile, 'w')];
    try {
      const p = spawnSync('nsenter', [...r.h.enterArgs(), '--', ...argv, '--root', stateDir, ...args], { input: opts.input ?? '', stdio: ['pipe', out, err], env: { ...process.env, NODE_EXTRA_CA_CERTS: '', TSNET_RUNC_IDLE: '20' }, timeout: 30_000 });
      return { code: p.status ?? -1, stdout: readFileSync(outFile, 'utf8'), stderr: readFileSync(errFile, 'utf8') };
    } finally {
      closeSync(out);
      closeSync(err);
    }
  };
  return {
    stateDir,
    argv,
    stop: () => spawnSync('pkill', ['-f', `--root ${stateDir} --serve`]),
    run,
    ok(args) {
      const p = run(args);
      if (p.code !== 0) throw new Error(`tsnet-runc ${args.join(' ')} failed (${p.code}): ${p.stderr}`);
      return p.stdout.trim();
    },
    bundle(name, edit) {
      const b = join(r.h.dir, name);
      mkdirSync(join(b, 'rootfs'), { recursive: true });
      spawnSync('tar', ['-C', join(b, 'rootfs'), '-xf', busyboxTar()]);
      const s = run(['spec', '--bundle', b]);
      assert.equal(s.code, 0, s.stderr);
      const c = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8'));
      c.process.terminal = false;
      c.linux.cgroupsPath = `/${r.cgroupParent}/${name}`;
      edit?.(c);
      writeFileSync(join(b, 'config.json'), JSON.stringify(c));
      return b;
    },
  };
}

const statusOf = (o: Oci, id: string) => JSON.parse(o.ok(['state', id])).status;

/** A console socket's other end: python3 (Node cannot receive a file descriptor) writes what the pty says, up to "done", to out. */
function consoleReceiver(r: RuntimeHost, sock: string, out: string) {
  return spawn('nsenter', [...r.h.enterArgs(), '--', 'python3', '-c', [
    'import socket, os, sys',
    's = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)',
    'c, _ = s.accept(); msg, fds, _, _ = socket.recv_fds(c, 1, 1)',
    'out = b""',
    'while b"done" not in out:',
    '    try: d = os.read(fds[0], 4096)',
    '    except OSError: break',
    '    if not d: break',
    '    out += d',
    'open(sys.argv[2], "wb").write(out)',
  ].join('\n'), sock, out], { stdio: 'ignore' });
}

for (const mode of Object.keys(MODES) as Mode[]) {
  test(`oci (${mode}): create waits, start runs it, state and list as runc prints them, kill, delete leaves nothing`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const out = join(r.h.dir, 'out');
        mkdirSync(out);
        const b = o.bundle('c1', (c) => {
          c.process.args = ['sh', '-c', 'echo pid=$$ host=$(hostname) dom=$(cat /proc/sys/kernel/domainname) fwd=$(cat /proc/sys/net/ipv4/ip_forward) nofile=$(ulimit -n) umask=$(umask) > /out/info; grep CapEff /proc/self/status >> /out/info; ls -ln /dev/tsnetnull >> /out/info; touch /rootfs-writable 2>/dev/null || echo ro >> /out/info; test -s /proc/kcore || echo masked >> /out/info; exec sleep 300'];
          c.hostname = 'ocibox';
          c.domainname = 'example.test';
          c.linux.sysctl = { 'net.ipv4.ip_forward': '1' };
          c.linux.devices = [{ path: '/dev/tsnetnull', type: 'c', major: 1, minor: 3, fileMode: 0o620, uid: 7, gid: 8 }];
          c.linux.resources = { ...c.linux.resources, memory: { limit: 64 << 20 }, pids: { limit: 50 } };
          c.process.user.umask = 0o027;
          c.mounts.push({ destination: '/out', type: 'bind', source: out, options: ['rbind', 'rw'] });
        });
        const created = o.run(['create', '--bundle', b, '--pid-file', join(r.h.dir, 'c1.pid'), 'c1']);
        assert.equal(created.code, 0, created.stderr);
        const st = JSON.parse(o.ok(['state', 'c1']));
        assert.equal(st.status, 'created');
        assert.equal(st.id, 'c1');
        assert.equal(st.bundle, b);
        assert.equal(st.ociVersion, '1.2.0');
        assert.equal(Number(readFileSync(join(r.h.dir, 'c1.pid'), 'utf8')), st.pid);
        assert.ok(!existsSync(join(out, 'info')), 'nothing ran before start');
        assert.match(o.ok(['list']), /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\nc1\s+\d+\s+created\s/);
        // Its cgroup, with the limits, under the test's parent.
        const mem = readFileSync(`/sys/fs/cgroup/memory/${r.cgroupParent}/c1/memory.limit_in_bytes`, 'utf8').trim();
        assert.equal(mem, String(64 << 20));
        assert.equal(readFileSync(`/sys/fs/cgroup/pids/${r.cgroupParent}/c1/pids.max`, 'utf8').trim(), '50');

        o.ok(['start', 'c1']);
        assert.ok(await pollUntil(() => existsSync(join(out, 'info')) && readFileSync(join(out, 'info'), 'utf8').includes('masked')), 'the process ran');
        const info = readFileSync(join(out, 'info'), 'utf8');
        assert.match(info, /^pid=1 host=ocibox dom=example.test fwd=1 nofile=1024 umask=0027$/m);
        assert.match(info, /^CapEff:\s+0+20000420$/m, 'AUDIT_WRITE, KILL, NET_BIND_SERVICE: the spec default');
        assert.match(info, /^crw--w----\s+1 7\s+8\s+1,\s+3 .* \/dev\/tsnetnull$/m);
        assert.match(info, /^ro$/m, 'root.readonly');
        assert.equal(statusOf(o, 'c1'), 'running');
        assert.equal(o.run(['start', 'c1']).code, 1, 'start twice');
        assert.deepEqual(JSON.parse(o.ok(['ps', '--format', 'json', 'c1'])), [st.pid]);

        // delete refuses a running container; kill stops it; delete removes everything.
        const refused = o.run(['delete', 'c1']);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /cannot delete container c1 that is not stopped: running/);
        o.ok(['kill', 'c1', 'KILL']);
        assert.ok(await pollUntil(() => statusOf(o, 'c1') === 'stopped'));
        assert.match(o.run(['kill', 'c1']).stderr, /container not running/);
        o.ok(['delete', 'c1']);
        assert.equal(o.run(['state', 'c1']).code, 1);
        assert.match(o.run(['state', 'c1']).stderr, /container does not exist: c1/);
        assert.deepEqual(r.leftoverCgroups(), []);
        assert.deepEqual(readdirSync(o.stateDir).filter((n) => !n.startsWith('.')), [], 'no container state (the warm server\'s socket may stay)');
        assert.equal(o.run(['delete', '--force', 'c1']).code, 0, 'delete --force of nothing is fine');
      } finally {
        o.stop();
      }
    }));

  test(`oci (${mode}): run in the foreground returns its exit code; run -d, exec (flags and process.json), exec -d, pause and resume`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const fg = o.bundle('fg', (c) => (c.process.args = ['sh', '-c', 'echo out; echo err >&2; exit 3']));
        const res = o.run(['run', '--bundle', fg, 'fg']);
        assert.equal(res.code, 3, res.stderr);
        assert.equal(res.stdout, 'out\n');
        assert.equal(res.stderr, 'err\n');
        assert.equal(o.ok(['list', '-q']), '', 'run deleted it when it ended');

        const bg = o.bundle('bg', (c) => (c.process.args = ['sleep', '300']));
        o.ok(['run', '-d', '--bundle', bg, '--pid-file', join(r.h.dir, 'bg.pid'), 'bg']);
        const pid = Number(readFileSync(join(r.h.dir, 'bg.pid'), 'utf8'));
        assert.equal(JSON.parse(o.ok(['state', 'bg'])).pid, pid);
        const ex = o.run(['exec', '-e', 'X=1', '--cwd', '/tmp', 'bg', 'sh', '-c', 'echo $X $(pwd) $$; exit 4']);
        assert.equal(ex.code, 4, ex.stderr);
        assert.match(ex.stdout, /^1 \/tmp \d+\n$/);
        assert.notEqual(ex.stdout.trim().split(' ')[2], '1', 'a new process in its pid namespace');
        writeFileSync(join(r.h.dir, 'proc.json'), JSON.stringify({ args: ['sh', '-c', 'id -u; exit 5'], env: ['PATH=/bin'], cwd: '/', user: { uid: 1000, gid: 1000 } }));
        const ex2 = o.run(['exec', '--process', join(r.h.dir, 'proc.json'), 'bg']);
        assert.equal(ex2.code, 5, ex2.stderr);
        assert.equal(ex2.stdout.trim(), '1000');
        o.ok(['exec', '-d', '--pid-file', join(r.h.dir, 'e.pid'), 'bg', 'sleep', '300']);
        const epid = Number(readFileSync(join(r.h.dir, 'e.pid'), 'utf8'));
        assert.deepEqual(JSON.parse(o.ok(['ps', '--format', 'json', 'bg'])).sort(), [pid, epid].sort());
        const missing = o.run(['exec', 'bg', 'nosuchcmd']);
        assert.equal(missing.code, 127);
        assert.match(missing.stderr, /executable file not found/);

        o.ok(['pause', 'bg']);
        assert.equal(statusOf(o, 'bg'), 'paused');
        assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^State:\s+[DS]/m);
        assert.match(o.run(['pause', 'bg']).stderr, /not running/);
        o.ok(['resume', 'bg']);
        assert.equal(statusOf(o, 'bg'), 'running');
        o.ok(['delete', '--force', 'bg']);
        assert.ok(await pollUntil(() => processGone(pid) && processGone(epid)), 'both processes are gone');
        assert.deepEqual(r.leftoverCgroups(), []);
      } finally {
        o.stop();
      }
    }));

  test(`oci (${mode}): hooks get the state on stdin at their stage; a failing prestart hook fails create and leaves nothing`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const log = join(r.h.dir, 'hooks.log');
        const hook = join(r.h.dir, 'hook.sh');
        writeFileSync(hook, `#!/bin/sh\nprintf '%s ' "$1" >> ${log}; cat >> ${log}; echo >> ${log}\n`);
        chmodSync(hook, 0o755);
        const h = (stage: string) => [{ path: hook, args: ['hook.sh', stage] }];
        const b = o.bundle('hk', (c) => {
          c.process.args = ['sleep', '300'];
          c.hooks = { prestart: h('prestart'), createRuntime: h('createRuntime'), poststart: h('poststart'), poststop: h('poststop') };
        });
        o.ok(['create', '--bundle', b, 'hk']);
        o.ok(['start', 'hk']);
        o.ok(['delete', '--force', 'hk']);
        const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => ({ stage: l.slice(0, l.indexOf(' ')), state: JSON.parse(l.slice(l.indexOf(' ') + 1)) }));
        assert.deepEqual(lines.map((l) => l.stage), ['prestart', 'createRuntime', 'poststart', 'poststop']);
        assert.ok(lines.every((l) => l.state.id === 'hk' && l.state.bundle === b));
        assert.ok(lines[0]!.state.pid > 0, 'prestart sees the pid');
        assert.equal(lines[0]!.state.status, 'creating');
        assert.equal(lines[3]!.state.status, 'stopped');

        const bad = o.bundle('hkbad', (c) => {
          c.process.args = ['sleep', '300'];
          c.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'echo no way >&2; exit 9'] }] };
        });
        const res = o.run(['create', '--bundle', bad, 'hkbad']);
        assert.equal(res.code, 1);
        assert.match(res.stderr, /prestart hook \/bin\/sh failed: exited with 9: no way/);
        assert.equal(o.ok(['list', '-q']), '');
        assert.deepEqual(r.leftoverCgroups(), []);
      } finally {
        o.stop();
      }
    }));

  test(`oci (${mode}): process.terminal and exec -t send a pty master of the container's devpts to --console-socket; the process has a controlling terminal`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const sock = join(r.h.dir, 'console.sock');
        const got = join(r.h.dir, 'console.out');
        const py = consoleReceiver(r, sock, got);
        const sock2 = join(r.h.dir, 'console2.sock');
        const got2 = join(r.h.dir, 'console2.out');
        const py2 = consoleReceiver(r, sock2, got2);
        try {
          assert.ok(await pollUntil(() => existsSync(sock) && existsSync(sock2)), 'the console sockets listen');
          const b = o.bundle('tty', (c) => {
            c.process.terminal = true;
            c.process.consoleSize = { height: 33, width: 101 };
            c.process.args = ['sh', '-c', 'tty; stty size; test -t 0 && echo stdin-is-tty; echo done; sleep 300'];
          });
          const res = o.run(['create', '--bundle', b, '--console-socket', sock, 'tty']);
          assert.equal(res.code, 0, res.stderr);
          o.ok(['start', 'tty']);
          assert.ok(await pollUntil(() => existsSync(got)), 'the console carried the output');
          const text = readFileSync(got, 'utf8');
          assert.match(text, /^\/dev\/pts\/0\r?$/m, 'a pty of its own devpts');
          assert.match(text, /33 101/);
          assert.match(text, /stdin-is-tty/);
          // exec -t: a second pty of the container's devpts, to a second console socket.
          const ex = o.run(['exec', '-t', '--console-socket', sock2, 'tty', 'sh', '-c', 'tty; echo done; exit 6']);
          assert.equal(ex.code, 6, ex.stderr);
          assert.ok(await pollUntil(() => existsSync(got2)), 'the exec console carried the output');
          assert.match(readFileSync(got2, 'utf8'), /^\/dev\/pts\/1\r?$/m);
          assert.match(o.run(['exec', '-t', 'tty', 'true']).stderr, /needs --console-socket/);
          o.ok(['delete', '--force', 'tty']);
          const noSock = o.run(['create', '--bundle', b, 'tty2']);
          assert.equal(noSock.code, 1);
          assert.match(noSock.stderr, /process.terminal is true: give --console-socket/);
        } finally {
          py.kill('SIGKILL');
          py2.kill('SIGKILL');
        }
      } finally {
        o.stop();
      }
    }));

  test(`oci (${mode}): bad bundles and ids are one line of error, exit 1, and leave no state, cgroup or process`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const cases: Array<[string, (c: any) => void, RegExp]> = [
          ['nosroot', (c) => (c.root.path = 'nothere'), /root.path "nothere" does not exist/],
          ['nsbad', (c) => c.linux.namespaces.push({ type: 'bogus' }), /linux.namespaces\[6\].type must be one of/],
          ['nsdup', (c) => c.linux.namespaces.push({ type: 'pid' }), /repeats the namespace type "pid"/],
          ['noargs', (c) => (c.process.args = []), /process.args must name the command/],
          ['relcwd', (c) => (c.process.cwd = 'tmp'), /process.cwd must be an absolute path/],
          ['badcap', (c) => c.process.capabilities.bounding.push('CAP_FLYING'), /unknown capability "CAP_FLYING"/],
          ['nobind', (c) => c.mounts.push({ destination: '/x', type: 'bind', source: '/no/such/dir', options: ['rbind'] }), /mounts\[7\].source "\/no\/such\/dir" does not exist/],
          ['badver', (c) => (c.ociVersion = '2.0.0'), /ociVersion must be a 1.0, 1.1 or 1.2 version/],
          ['nocmd', (c) => (c.process.args = ['/bin/nosuch']), /exec: "\/bin\/nosuch": No such file or directory/],
          ['userns', (c) => c.linux.namespaces.push({ type: 'user' }), /user namespaces .* not supported/],
          ['nomnt', (c) => (c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'mount')), /must include a new "mount" namespace/],
          ['badrl', (c) => (c.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }]), /soft limit 10 is above the hard limit 5/],
        ];
        for (const [id, edit, re] of cases) {
          const b = o.bundle(id, edit);
          const res = o.run(['create', '--bundle', b, id]);
          assert.equal(res.code, 1, `${id}: ${res.stderr}`);
          assert.match(res.stderr, re, id);
          assert.equal(res.stderr.trim().split('\n').length, 1, `${id}: one line: ${res.stderr}`);
        }
        const notJson = join(r.h.dir, 'notjson');
        mkdirSync(notJson);
        writeFileSync(join(notJson, 'config.json'), '{ nope');
        assert.match(o.run(['create', '--bundle', notJson, 'nj']).stderr, /config.json is not JSON/);
        assert.match(o.run(['create', '--bundle', join(r.h.dir, 'nobundle'), 'nb']).stderr, /no such file \(is --bundle right\?\)/);
        assert.match(o.run(['state', '../x']).stderr, /invalid container id/);
        assert.match(o.run(['start', 'ghost']).stderr, /container does not exist: ghost/);
        assert.match(o.run(['frobnicate']).stderr, /unknown command "frobnicate"/);
        // A duplicate id is refused and leaves the first alone.
        const b = o.bundle('dup', (c) => (c.process.args = ['sleep', '300']));
        o.ok(['create', '--bundle', b, 'dup']);
        const dup = o.run(['create', '--bundle', b, 'dup']);
        assert.match(dup.stderr, /container with id exists: dup/);
        assert.equal(statusOf(o, 'dup'), 'created');
        o.ok(['delete', 'dup']);
        assert.equal(o.ok(['list', '-q']), '');
        assert.deepEqual(r.leftoverCgroups(), []);
        // And with --log/--log-format json, the error is in the log as containerd reads it.
        const logf = join(r.h.dir, 'log.json');
        o.run(['--log', logf, '--log-format', 'json', 'state', 'ghost']);
        const rec = JSON.parse(readFileSync(logf, 'utf8').trim());
        assert.equal(rec.level, 'error');
        assert.match(rec.msg, /container does not exist: ghost/);
      } finally {
        o.stop();
      }
    }));

  test(`oci (${mode}): a SIGKILL of tsnet-runc mid-create is undone by delete --force (no state, cgroup or process left)`, { skip }, () =>
    withRuntime(async (r) => {
      const o = oci(r, mode);
      try {
        const b = o.bundle('crash', (c) => (c.process.args = ['sleep', '300']));
        for (const point of ['oci-create:after-record', 'oci-create:before-helper']) {
          const p = spawn('nsenter', [...r.h.enterArgs(), '--', ...o.argv, '--root', o.stateDir, 'create', '--bundle', b, 'crash'], { env: { ...process.env, TSNET_FAULT: `${point}:hang` }, stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          p.stderr!.on('data', (d) => (err += d));
          assert.ok(await pollUntil(() => err.includes(`hang at ${point}`)), `reached ${point}: ${err}`);
          p.kill('SIGKILL');
          await new Promise((res) => p.on('exit', res));
          assert.equal(statusOf(o, 'crash'), 'stopped', `${point}: a dead create shows as stopped`);
          o.ok(['delete', 'crash']);
          assert.equal(o.ok(['list', '-q']), '', point);
          assert.deepEqual(r.leftoverCgroups(), [], point);
        }
      } finally {
        o.stop();
      }
    }));
}
