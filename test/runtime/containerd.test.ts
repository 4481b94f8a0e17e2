// containerd drives tsnet's OCI runtime as it drives runc: `ctr run --runc-binary`
// makes the io.containerd.runc.v2 shim call the native tsnet-runc (create with its pipes,
// start, state, exec --process --detach, pause, resume, kill, delete), and the
// container's init is the shim's child once tsnet-runc has exited.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestHost, skipReason, pollUntil } from '../integration/harness.js';
import { startContainerd } from '../integration/containerd.js';
import { busyboxTar } from './harness.js';

const skip = skipReason('containerd', 'ctr', 'unshare', 'tar');

test('containerd: ctr run with --runc-binary tsnet-runc: output, exec, pause/resume, kill, and nothing left', { skip, timeout: 120_000 }, async () => {
  const h = TestHost.create();
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-ctrrt-'));
  const cd = await startContainerd(h, dir).catch((err) => {
    rmSync(dir, { recursive: true, force: true });
    h.destroy();
    throw err;
  });
  try {
    const root = join(dir, 'rootfs');
    mkdirSync(root);
    const tar = spawn('tar', ['-C', root, '-xf', busyboxTar()]);
    await new Promise((r) => tar.on('exit', r));
    // The native tsnet-runc: the first calls run in Node and start a warm server for the shim's root, the rest use it.
    const wrapper = join(process.cwd(), 'native', 'build', 'Release', 'tsnet-runc');
    const { ctr } = cd;

    // Foreground: the container's output reaches ctr through the shim's pipes, its exit code too.
    const fg = ctr('run', '--rm', '--runc-binary', wrapper, '--rootfs', root, 'fg', 'sh', '-c', 'echo hello from tsnet-runc pid=$$; exit 7');
    assert.equal(fg.stdout.trim(), 'hello from tsnet-runc pid=1', fg.stderr);
    assert.equal(fg.status, 7, fg.stderr);

    // Detached: a long-running task, exec into it, pause and resume, kill.
    const bg = ctr('run', '-d', '--runc-binary', wrapper, '--rootfs', root, 'bg', 'sleep', '300');
    assert.equal(bg.status, 0, bg.stderr);
    let pid = 0;
    assert.ok(await pollUntil(() => {
      const m = /^bg\s+(\d+)\s+RUNNING/m.exec(ctr('task', 'ls').stdout);
      pid = m ? Number(m[1]) : 0;
      return pid > 0;
    }), `task bg runs: ${ctr('task', 'ls').stdout}`);
    // Its init is the shim's child (tsnet-runc is gone), in the cgroup containerd asked for.
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    assert.match(readFileSync(`/proc/${ppid}/cmdline`, 'utf8'), /containerd-shim-runc-v2/);
    assert.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`:/${cd.ns}/bg$`, 'm'));
    // tsnet-runc's own state (runc's would have no phase), under the root the shim gave it.
    const state = JSON.parse(readFileSync(`/proc/${ppid}/root/run/containerd/runc/${cd.ns}/bg/state.json`, 'utf8'));
    assert.equal(state.phase, 'started');
    assert.equal(state.pid, pid);
    const ex = ctr('task', 'exec', '--exec-id', 'e1', 'bg', 'sh', '-c', 'echo in-exec; ps -o pid,comm | wc -l');
    assert.equal(ex.status, 0, ex.stderr);
    assert.equal(ex.stdout.trim().split('\n')[0], 'in-exec');
    assert.equal(ctr('task', 'pause', 'bg').status, 0);
    assert.match(ctr('task', 'ls').stdout, /^bg\s+\d+\s+PAUSED/m);
    assert.equal(ctr('task', 'resume', 'bg').status, 0);
    assert.match(ctr('task', 'ls').stdout, /^bg\s+\d+\s+RUNNING/m);
    assert.equal(ctr('task', 'kill', '-s', 'KILL', 'bg').status, 0);
    assert.ok(await pollUntil(() => /^bg\s+\d+\s+STOPPED/m.test(ctr('task', 'ls').stdout)), 'the exit reached containerd');
    assert.equal(ctr('task', 'rm', 'bg').status, 0);
    assert.equal(ctr('containers', 'rm', 'bg').status, 0);
    assert.equal(ctr('task', 'ls', '-q').stdout.trim(), '');
    assert.doesNotMatch(cd.log.text, /level=error/, cd.log.text);
  } finally {
    await cd.stop();
    spawnSync('pkill', ['-f', `--root /run/containerd/runc/${cd.ns} --serve`]);
    rmSync(dir, { recursive: true, force: true });
    h.destroy();
  }
});
