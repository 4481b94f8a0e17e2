// `run -it` through a real terminal (a tmux pane of the test's own tmux server):
// raw mode, the window size, ^C reaching the process, the detach keys leaving it
// running, and `tsnet attach` taking it back up to its exit code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pollUntil, runtimeSkip, withRuntime, type RuntimeHost } from './harness.js';

const skip = runtimeSkip('tmux');

/** A tmux server of the test's own, and panes that run tsnet inside the test's host. */
function terminal(r: RuntimeHost) {
  const sock = join(r.h.dir, 'tmux.sock');
  const tmux = (...a: string[]) => spawnSync('tmux', ['-S', sock, ...a], { encoding: 'utf8' });
  const env = { TSNET_ROOT: r.h.root, TSNET_RUN: r.h.runDir, TSNET_FIREWALL: r.h.firewall, NODE_EXTRA_CA_CERTS: '', ...r.h.extraEnv };
  const q = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
  return {
    /** A new session running `tsnet ARGS`, then printing its exit code and waiting. */
    open(name: string, args: string[]) {
      const cmd = ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'nsenter', ...r.h.enterArgs(), '--', process.execPath, join(process.cwd(), 'bin', 'tsnet.js'), ...args].map(q).join(' ');
      const res = tmux('new-session', '-d', '-s', name, '-x', '100', '-y', '30', `${cmd}; echo EXIT=$?; sleep 600`);
      assert.equal(res.status, 0, res.stderr);
    },
    keys: (name: string, ...k: string[]) => tmux('send-keys', '-t', name, ...k),
    screen: (name: string) => tmux('capture-pane', '-p', '-t', name, '-S', '-100').stdout,
    async waitFor(name: string, re: RegExp, what: string) {
      const ok = await pollUntil(() => re.test(this.screen(name)), 15_000);
      assert.ok(ok, `${what}; the screen:\n${this.screen(name)}`);
    },
    close: () => tmux('kill-server'),
  };
}

test('-it: a real terminal (raw mode, window size, ^C), the detach keys leave it running, attach takes it back', { skip, timeout: 120_000 }, () =>
  withRuntime(async (r) => {
    const t = terminal(r);
    try {
      t.open('run', ['run', '-it', '--name', 't1', 'bb', 'sh']);
      await t.waitFor('run', /^\/ #/m, 'the shell prompt');
      t.keys('run', 'echo $((6*7)); test -t 0 && echo IS-A-TTY; stty size; tty', 'Enter');
      await t.waitFor('run', /^42\r?$[\s\S]*IS-A-TTY[\s\S]*^30 100\r?$[\s\S]*^\/dev\/pts\/0\r?$/m, "output, a terminal of the pane's size, from the container's own devpts");
      // ^C reaches the foreground process, not tsnet.
      t.keys('run', 'sleep 100', 'Enter');
      await new Promise((res) => setTimeout(res, 500));
      t.keys('run', 'C-c');
      t.keys('run', 'echo after-interrupt', 'Enter');
      await t.waitFor('run', /^after-interrupt\r?$/m, 'the shell went on after ^C');
      assert.doesNotMatch(t.screen('run'), /EXIT=/, 'tsnet is still attached');
      // ctrl-p ctrl-q: tsnet returns 0, the container runs on.
      t.keys('run', 'C-p', 'C-q');
      await t.waitFor('run', /EXIT=0$/m, 'detached');
      assert.equal(r.inspect('t1').State.Status, 'running');
      // attach: the same shell, until it exits with its code.
      t.open('att', ['attach', 't1']);
      await new Promise((res) => setTimeout(res, 1000));
      t.keys('att', 'echo attached-again', 'Enter');
      await t.waitFor('att', /^attached-again\r?$/m, 'attach reaches the shell');
      t.keys('att', 'exit 3', 'Enter');
      await t.waitFor('att', /EXIT=3$/m, "attach returns the container's exit code");
      assert.ok(await pollUntil(() => r.inspect('t1').State.Status === 'exited'));
      assert.equal(r.inspect('t1').State.ExitCode, 3);
      assert.match(r.tsnet(['attach', 't1']).stderr, /You cannot attach to a stopped container/);
      assert.match(r.tsnet(['run', '-it', '--detach-keys', 'ctrl-', 'bb', 'true']).stderr, /invalid --detach-keys/);
    } finally {
      t.close();
    }
  }));
