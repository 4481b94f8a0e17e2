// tsnet run and the container lifecycle on the real kernel, each test in its own
// throwaway host (network and mount namespaces, cgroup parent).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { pollUntil, runtimeSkip, withRuntime } from './harness.js';
import { processGone } from '../integration/harness.js';

const skip = runtimeSkip('ping');

test('run: PID 1 is the command, own hostname, only its processes, its exit code; --rm leaves nothing', { skip }, () =>
  withRuntime((r) => {
    const res = r.tsnet(['run', '--rm', '--name', 'c1', '--hostname', 'box', 'bb', 'sh', '-c', 'echo pid=$$; hostname; ps -o pid,comm > /tmp/ps; wc -l < /tmp/ps; cat /proc/1/cmdline | tr "\\0" " "; echo; echo oops >&2; exit 7']);
    assert.equal(res.code, 7, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.equal(lines[0], 'pid=1');
    assert.equal(lines[1], 'box');
    assert.equal(lines[2], '3', 'ps sees only the shell and itself (plus the header)');
    assert.match(lines[3]!, /^sh -c echo pid/);
    assert.match(res.stderr, /oops/);
    assert.equal(r.ok(['ps', '-aq']), '', 'the container is gone');
    assert.deepEqual(r.leftoverCgroups(), []);
    assert.deepEqual(r.mounts(), [], 'no rootfs mount left');
    assert.equal(r.ok(['sandbox', 'ls', '-q']), '', 'no sandbox left');
  }));

test('isolation: masked and read-only /proc paths, the default capabilities, seccomp, no_new_privs', { skip }, () =>
  withRuntime((r) => {
    const out = r.ok(['run', '--rm', 'bb', 'sh', '-c', [
      'wc -c < /proc/timer_list; ls /proc/acpi | wc -l',
      'grep CapEff /proc/self/status',
      '(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-writable || echo sys-readonly',
      'unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-denied',
      'grep NoNewPrivs /proc/self/status',
      'ls /dev | tr "\\n" " "',
    ].join('; ')]);
    const l = out.split('\n');
    assert.ok(readFileSync('/proc/timer_list', 'utf8').length > 0, 'the host has a /proc/timer_list to hide');
    assert.equal(l.shift(), '0', '/proc/timer_list is masked (empty)');
    assert.match(l[1]!, /CapEff:\s+00000000a80425fb/, "Docker's default set: no NET_ADMIN, no SYS_ADMIN");
    assert.equal(l[2], 'sys-readonly');
    assert.equal(l[3], 'unshare-denied', 'seccomp refuses unshare without CAP_SYS_ADMIN');
    assert.match(l[4]!, /NoNewPrivs:\s+0/);
    for (const d of ['null', 'zero', 'urandom', 'pts', 'shm', 'mqueue', 'ptmx', 'fd']) assert.ok(l[5]!.split(' ').includes(d), `/dev/${d}: ${l[5]}`);
    const unconfined = r.ok(['run', '--rm', '--security-opt', 'seccomp=unconfined', '--security-opt', 'no-new-privileges', '--cap-add', 'NET_ADMIN', '--cap-drop', 'MKNOD', 'bb', 'sh', '-c', 'unshare -U true && echo unshare-ok; grep -E "CapEff|NoNewPrivs" /proc/self/status']);
    assert.match(unconfined, /unshare-ok/);
    assert.match(unconfined, /CapEff:\s+00000000a00435fb/, '+NET_ADMIN (bit 12) -MKNOD (bit 27)');
    assert.match(unconfined, /NoNewPrivs:\s+1/);
    const priv = r.ok(['run', '--rm', '--privileged', 'bb', 'sh', '-c', 'grep CapEff /proc/self/status; wc -c < /proc/timer_list']).split('\n');
    const own = /^CapBnd:\s+(\S+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    assert.equal(priv[0], `CapEff:\t${own}`, 'privileged: every capability tsnet has');
    assert.notEqual(priv[1], '0', 'privileged: nothing masked');
  }));

test('a seccomp profile file: a syscall it denies fails with its errno', { skip }, () =>
  withRuntime((r) => {
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-sc-'));
    const profile = join(dir, 'p.json');
    writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] }));
    const res = r.tsnet(['run', '--rm', '--security-opt', `seccomp=${profile}`, 'bb', 'mkdir', '/tmp/x']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /Operation not permitted/);
    const bad = r.tsnet(['run', '--rm', '--security-opt', `seccomp=${join(dir, 'missing.json')}`, 'bb', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /seccomp profile .* cannot be read/);
  }));

test('cgroups: a memory hog is OOM-killed (137, OOMKilled), a pids limit stops a fork bomb, cpu quota and cpuset are set', { skip }, () =>
  withRuntime((r) => {
    const oom = r.tsnet(['run', '--name', 'hog', '--memory', '16m', 'bb', 'sh', '-c', 'head -c 400m /dev/zero | tail']);
    assert.equal(oom.code, 137, oom.stderr);
    const st = r.inspect('hog').State;
    assert.equal(st.OOMKilled, true);
    assert.equal(st.ExitCode, 137);
    const bomb = r.tsnet(['run', '--rm', '--pids-limit', '10', 'bb', 'sh', '-c', 'for i in $(seq 30); do sleep 5 & done; wait']);
    assert.match(bomb.stderr, /can't fork/);
    const id = r.ok(['run', '-d', '--cpus', '0.5', '--cpu-shares', '512', '--cpuset-cpus', '0', '--memory', '32m', '--pids-limit', '77', 'bb', 'sleep', '100']);
    const cg = r.cgroupDirs();
    const read = (ctl: string, f: string) => readFileSync(join(cg.find((d) => d.includes(`/${ctl}/`))!, id, f), 'utf8').trim();
    assert.equal(read('cpu', 'cpu.cfs_quota_us'), '50000');
    assert.equal(read('cpu', 'cpu.cfs_period_us'), '100000');
    assert.equal(read('cpu', 'cpu.shares'), '512');
    assert.equal(read('cpuset', 'cpuset.cpus'), '0');
    assert.equal(read('memory', 'memory.limit_in_bytes'), String(32 * 1024 * 1024));
    assert.equal(read('memory', 'memory.memsw.limit_in_bytes'), String(64 * 1024 * 1024));
    assert.equal(read('pids', 'pids.max'), '77');
    const procs = read('pids', 'cgroup.procs').split('\n');
    assert.ok(procs.includes(String(r.inspect(id).State.Pid)), 'the container process is in its cgroup');
    r.ok(['rm', '-f', id, 'hog']);
    assert.deepEqual(r.leftoverCgroups(), []);
  }));

test('networking: a published port answers from outside, containers reach each other, exec joins everything', { skip }, () =>
  withRuntime(async (r) => {
    const outside = r.h.addOutside();
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-www-'));
    writeFileSync(join(dir, 'index.html'), 'hello from a container\n');
    const web = r.ok(['run', '-d', '--name', 'web', '-p', '8080:80', '-v', `${dir}:/www:ro`, 'bb', 'httpd', '-f', '-p', '80', '-h', '/www']);
    assert.match(web, /^[0-9a-f]{64}$/);
    const ip = r.inspect('web').NetworkSettings.IPAddress as string;
    assert.match(ip, /^172\.17\.0\.\d+$/);
    assert.ok(await pollUntil(() => r.sh('curl', '-s', '--max-time', '1', 'http://127.0.0.1:8080/').stdout.includes('hello')), 'the port answers on the host');
    const fromOutside = spawnSync('nsenter', [`--net=${outside}`, 'curl', '-s', '--max-time', '2', 'http://198.51.100.1:8080/'], { encoding: 'utf8' });
    assert.match(fromOutside.stdout, /hello from a container/, 'and from outside the host');
    const other = r.tsnet(['run', '--rm', 'bb', 'ping', '-c', '1', '-W', '2', ip]);
    assert.equal(other.code, 0, `a second container reaches the first by address: ${other.stdout}${other.stderr}`);
    const ro = r.tsnet(['exec', 'web', 'sh', '-c', 'echo x > /www/y']);
    assert.notEqual(ro.code, 0, 'the :ro bind mount is read-only');
    const ex = r.tsnet(['exec', '-e', 'FOO=bar', '-w', '/www', 'web', 'sh', '-c', 'echo $FOO; pwd; ps -o pid,comm | grep -c httpd; cat /proc/self/cgroup | grep memory']);
    assert.equal(ex.code, 0, ex.stderr);
    const el = ex.stdout.trim().split('\n');
    assert.deepEqual(el.slice(0, 3), ['bar', '/www', '1']);
    assert.match(el[3]!, /memory:\/$/, "exec is in the container's cgroup namespace (its cgroup is the root there)");
    assert.equal(r.tsnet(['exec', 'web', 'sh', '-c', 'exit 3']).code, 3);
    assert.equal(r.tsnet(['exec', 'web', 'nonexistent-cmd']).code, 127);
    const ps = r.ok(['ps', '--format', '{{.Names}} {{.Ports}}']);
    assert.equal(ps, 'web 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp');
    assert.match(r.ok(['top', 'web']), /httpd -f -p 80/);
    r.ok(['rm', '-f', 'web']);
    assert.doesNotMatch(r.h.iptables(), /8080/, 'the port rules are gone');
    assert.equal(r.h.links().filter((l) => l.startsWith('veth')).length, 0, 'no veth left');
  }));

test('logs survive the CLI, keep stdout and stderr apart, and follow; stop sends the stop signal', { skip }, () =>
  withRuntime(async (r) => {
    r.ok(['run', '-d', '--name', 'talker', '--stop-signal', 'USR1', 'bb', 'sh', '-c', 'trap "echo got-usr1; exit 0" USR1; echo one; echo two >&2; while true; do sleep 0.1; done']);
    assert.ok(await pollUntil(() => r.tsnet(['logs', 'talker']).stdout.includes('one')));
    const logs = r.tsnet(['logs', 'talker']);
    assert.equal(logs.stdout, 'one\n');
    assert.equal(logs.stderr, 'two\n');
    assert.match(r.tsnet(['logs', '-t', 'talker']).stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z one\n$/);
    const follow = r.h.spawnTsnet(['logs', '-f', 'talker']);
    let followed = '';
    follow.stdout!.on('data', (d) => (followed += d));
    const done = new Promise<number>((res) => follow.on('close', (c) => res(c ?? -1)));
    r.ok(['stop', '-t', '5', 'talker']);
    assert.equal(await done, 0, 'logs -f ends when the container exits');
    assert.match(followed, /one\ngot-usr1\n/);
    const st = r.inspect('talker').State;
    assert.equal(st.Status, 'exited');
    assert.equal(st.ExitCode, 0, 'it exited on its stop signal, not SIGKILL');
    assert.equal(r.ok(['wait', 'talker']), '0');
    assert.equal(r.ok(['logs', '--tail', '1', 'talker']), 'got-usr1');
  }));

test('kill, stop of a process that ignores SIGTERM, start again, rm: nothing left behind', { skip }, () =>
  withRuntime(async (r) => {
    r.ok(['run', '-d', '--name', 'k', 'bb', 'sleep', '1000']);
    const pid = r.inspect('k').State.Pid as number;
    const mon = r.inspect('k');
    assert.ok(pid > 0 && mon.State.Running);
    r.ok(['stop', '-t', '1', 'k']);
    assert.equal(r.inspect('k').State.ExitCode, 137, 'PID 1 ignores SIGTERM: SIGKILL after the timeout');
    assert.ok(processGone(pid));
    assert.deepEqual(r.mounts(), [], 'a stopped container holds no mount');
    r.ok(['start', 'k']);
    assert.equal(r.inspect('k').State.Status, 'running');
    r.ok(['kill', '-s', 'TERM', 'k']);
    r.ok(['kill', 'k']);
    assert.equal(r.ok(['wait', 'k']), '137');
    assert.match(r.ok(['ps', '-a', '--format', '{{.Status}}']), /^Exited \(137\)/);
    r.ok(['rm', 'k']);
    assert.equal(r.ok(['ps', '-aq']), '');
    assert.deepEqual(r.leftoverCgroups(), []);
    assert.deepEqual(r.mounts(), []);
    assert.equal(existsSync(join(r.h.root, 'containers', mon.Id)), false, 'its directory is gone');
  }));

test('--init reaps zombies and forwards signals; --user, -w, -e, --env-file, --read-only, --tmpfs, --ulimit', { skip }, () =>
  withRuntime((r) => {
    const init = r.ok(['run', '--rm', '--init', 'bb', 'sh', '-c', 'cat /proc/1/cmdline | tr "\\0" " "']);
    assert.match(init, /^\/sbin\/tsnet-init -- sh -c/);
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-env-'));
    writeFileSync(join(dir, 'env'), '# comment\nFROM_FILE=1\nSHARED=file\n');
    const u = r.ok(['run', '--rm', '--user', 'app', '-w', '/work', '--env-file', join(dir, 'env'), '-e', 'SHARED=flag', '--read-only', '--tmpfs', '/scratch', '--ulimit', 'nofile=100:200', 'bb', 'sh', '-c',
      'id; pwd; echo $FROM_FILE $SHARED $HOME; touch /x 2>/dev/null && echo root-writable || echo root-readonly; touch /scratch/y && echo tmpfs-ok; ulimit -n; ulimit -Hn']);
    assert.deepEqual(u.split('\n'), ['uid=1000(app) gid=1000(app) groups=2000(extra)', '/work', '1 flag /home/app', 'root-readonly', 'tmpfs-ok', '100', '200']);
    assert.match(r.ok(['run', '--rm', '--user', '1234:2000', 'bb', 'id']), /^uid=1234 gid=2000\(extra\)/);
  }));

test('bad input: one clear line, a non-zero exit, and nothing left behind', { skip }, () =>
  withRuntime((r) => {
    const cases: Array<[string[], RegExp, number?]> = [
      [['run', '--pull', 'never', 'nosuchimage'], /No such image: nosuchimage/],
      [['run', '--memory', 'lots', 'bb', 'true'], /invalid --memory "lots"/],
      [['run', '--memory', '1k', 'bb', 'true'], /minimum memory limit/],
      [['run', '--cpus', 'x', 'bb', 'true'], /invalid --cpus/],
      [['run', '--ulimit', 'nofile=10:5', 'bb', 'true'], /soft limit 10 is above the hard limit 5/],
      [['run', '--ulimit', 'bogus=1', 'bb', 'true'], /unknown limit "bogus"/],
      [['run', 'bb'], /no command specified/],
      [['run', '--user', 'nobody-here', 'bb', 'true'], /unable to find user nobody-here/],
      [['run', '-v', '/nonexistent/path:/x', 'bb', 'true'], /bind source path does not exist/],
      [['run', '--network', 'nonet', 'bb', 'true'], /network nonet not found/],
      [['run', '--cap-add', 'NOT_A_CAP', 'bb', 'true'], /unknown capability/],
      [['run', '--name', 'bad name', 'bb', 'true'], /invalid container name/],
      [['run', '--rm', 'bb', 'no-such-binary'], /executable file not found/, 127],
      [['run', '--rm', 'bb', '/etc/passwd'], /permission denied|Permission denied/i, 126],
    ];
    for (const [args, msg, code] of cases) {
      const res = r.tsnet(args);
      assert.equal(res.code, code ?? 125, `${args.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, msg, args.join(' '));
      assert.equal(res.stderr.trim().split('\n').length, 1, `one line: ${res.stderr}`);
    }
    // As Docker: a run whose start failed leaves its container created (with the error), unless --rm.
    const left = r.ok(['ps', '-a', '--format', '{{.State}}']).split('\n').filter(Boolean);
    assert.deepEqual(left, ['created'], 'only the --user one, which failed at start, is left');
    r.ok(['container', 'prune']);
    assert.equal(r.ok(['ps', '-aq']), '');
    r.ok(['create', '--name', 'dup', 'bb', 'true']);
    const dup = r.tsnet(['create', '--name', 'dup', 'bb', 'true']);
    assert.equal(dup.code, 125);
    assert.match(dup.stderr, /is already in use/);
    // A port taken by another container: the start fails and releases everything.
    r.ok(['run', '-d', '--name', 'holder', '-p', '9090:80', 'bb', 'sleep', '100']);
    const taken = r.tsnet(['run', '-d', '--name', 'second', '-p', '9090:80', 'bb', 'sleep', '100']);
    assert.equal(taken.code, 125);
    assert.match(taken.stderr, /9090/);
    assert.equal(r.inspect('second').State.Status, 'created');
    r.ok(['rm', '-f', 'holder', 'second', 'dup']);
    const running = r.tsnet(['rm', 'nosuch']);
    assert.notEqual(running.code, 0);
    assert.deepEqual(r.leftoverCgroups(), []);
    assert.deepEqual(r.mounts(), []);
    assert.equal(r.ok(['sandbox', 'ls', '-q']), '');
  }));

test('the monitor outlives the CLI: a foreground run killed with SIGKILL leaves the container running', { skip }, () =>
  withRuntime(async (r) => {
    const cli = r.h.spawnTsnet(['run', '--name', 'fg', 'bb', 'sh', '-c', 'echo started; sleep 1000']);
    let out = '';
    cli.stdout!.on('data', (d) => (out += d));
    assert.ok(await pollUntil(() => out.includes('started')));
    cli.kill('SIGKILL');
    await new Promise((res) => cli.on('close', res));
    const st = r.inspect('fg').State;
    assert.equal(st.Status, 'running');
    assert.ok(!processGone(st.Pid));
    assert.match(r.ok(['logs', 'fg']), /started/);
    r.ok(['rm', '-f', 'fg']);
    assert.ok(processGone(st.Pid));
  }));

test('a SIGKILL of tsnet at any step of run or rm is undone or finished by the next command', { skip }, () =>
  withRuntime(async (r) => {
    for (const point of ['start:after-rootfs', 'start:after-network', 'start:after-cgroup', 'start:before-monitor']) {
      const cli = r.h.spawnTsnet(['run', '-d', '--name', 'crash', '-p', '7070:80', 'bb', 'sleep', '100'], { TSNET_FAULT: `${point}:hang` });
      let err = '';
      cli.stderr!.on('data', (d) => (err += d));
      assert.ok(await pollUntil(() => err.includes('tsnet-fault: hang')), `${point}: reached (${err})`);
      cli.kill('SIGKILL');
      await new Promise((res) => cli.on('close', res));
      const st = r.inspect('crash').State;
      assert.equal(st.Status, 'created', `${point}: the interrupted start is undone`);
      assert.match(st.Error, /stopped while starting/);
      assert.deepEqual(r.leftoverCgroups(), [], `${point}: no cgroup`);
      assert.deepEqual(r.mounts(), [], `${point}: no mount`);
      assert.equal(r.ok(['sandbox', 'ls', '-q']), '', `${point}: no sandbox`);
      assert.doesNotMatch(r.h.iptables(), /7070/, `${point}: no rule`);
      r.ok(['start', 'crash']);
      assert.equal(r.inspect('crash').State.Status, 'running', `${point}: it starts afterwards`);
      r.ok(['rm', '-f', 'crash']);
    }
    r.ok(['run', '-d', '--name', 'gone', 'bb', 'sleep', '100']);
    const cli = r.h.spawnTsnet(['rm', '-f', 'gone'], { TSNET_FAULT: 'rm:after-mark:hang' });
    let err = '';
    cli.stderr!.on('data', (d) => (err += d));
    assert.ok(await pollUntil(() => err.includes('tsnet-fault: hang')));
    cli.kill('SIGKILL');
    await new Promise((res) => cli.on('close', res));
    assert.equal(r.ok(['ps', '-aq']), '', 'the next command finishes the removal');
    assert.deepEqual(r.leftoverCgroups(), []);
    assert.deepEqual(r.mounts(), []);
  }));

test('stats: CPU, memory against its limit, network I/O and PIDs, from its cgroup and network namespace', { skip }, () =>
  withRuntime(async (r) => {
    r.ok(['run', '-d', '--name', 'busy', '--memory', '64m', 'bb', 'sh', '-c', 'while :; do :; done & sleep 300']);
    const gw = r.inspect('busy').NetworkSettings.Networks.bridge.Gateway;
    r.ok(['exec', 'busy', 'ping', '-c', '3', '-i', '0.2', gw]);
    const res = r.tsnet(['stats', '--no-stream', '--format', 'json', 'busy']);
    assert.equal(res.code, 0, res.stderr);
    const s = JSON.parse(res.stdout.trim());
    assert.equal(s.Name, 'busy');
    assert.ok(parseFloat(s.CPUPerc) > 30, `a busy loop shows: ${s.CPUPerc}`);
    assert.match(s.MemUsage, /^[\d.]+(B|KiB|MiB) \/ 64MiB$/);
    assert.ok(Number(s.PIDs) >= 2, s.PIDs);
    assert.doesNotMatch(s.NetIO, /^0B \//, `received bytes counted: ${s.NetIO}`);
    const table = r.ok(['stats', '--no-stream']).split('\n');
    assert.match(table[0]!, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
    assert.match(table[1]!, /\sbusy\s/);
    assert.match(r.tsnet(['stats', '--no-stream', 'nosuch']).stderr, /No such container: nosuch/);
    r.ok(['rm', '-f', 'busy']);
  }));
