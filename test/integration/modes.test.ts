// null, host and container network modes, and sandboxes over existing namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readlinkSync, statSync } from 'node:fs';
import { pollUntil, processGone, skipReason, withHost } from './harness.js';

/** The inode of a process's network namespace; undefined once it is gone. */
function netnsInode(pid: number): number | undefined {
  try {
    return Number(/net:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1]);
  } catch {
    return undefined;
  }
}

const skip = skipReason('ping', 'unshare');

test('null driver: the sandbox has only lo, and it is up', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', '--network', 'none', 'n']);
    const links = h.inSandbox('n', 'ip', '-o', 'link').stdout.trim().split('\n');
    assert.equal(links.length, 1);
    assert.match(links[0]!, /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    assert.ok(Object.values(h.inspect('network', 'none').Containers).some((c: any) => c.Name === 'n'));
    const r = h.tsnet(['network', 'connect', 'bridge', 'n']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /none network/);
  }));

test('host driver: the sandbox sees the host links; nothing is created', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'warm']);
    const before = h.links();
    h.ok(['sandbox', 'create', '--network', 'host', 'hs']);
    assert.deepEqual(h.links(), before, 'no link was added for a host sandbox');
    const inside = h.inSandbox('hs', 'ip', '-o', 'link').stdout;
    assert.match(inside, /tsnet0/, 'the host sandbox sees the host bridge');
    const r = h.tsnet(['network', 'connect', 'bridge', 'hs']);
    assert.notEqual(r.code, 0);
    h.ok(['sandbox', 'rm', 'hs']);
    assert.deepEqual(h.links(), before);
  }));

test('container mode: B shares A\'s namespace; A cannot be removed while B uses it', { skip }, () =>
  withHost((h) => {
    h.ok(['sandbox', 'create', 'a']);
    h.ok(['sandbox', 'create', '--network', 'container:a', 'b']);
    const b = h.inspect('sandbox', 'b');
    assert.equal(b.NetworkMode, 'container:a');
    assert.equal(b.SandboxKey, h.inspect('sandbox', 'a').SandboxKey);
    assert.match(h.inNs(b.SandboxKey, 'ip', '-o', 'addr', 'show', 'eth0').stdout, /172\.17\.0\.2\/16/);
    const r = h.tsnet(['sandbox', 'rm', 'a']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /in use by b/);
    assert.notEqual(h.tsnet(['network', 'connect', 'bridge', 'b']).code, 0, 'container-mode sandboxes join no networks');
    h.ok(['sandbox', 'rm', 'b']);
    h.ok(['sandbox', 'rm', 'a']);
  }));

test('sandboxes over an existing namespace: by path and by process id', { skip }, async () =>
  withHost(async (h) => {
    const ns = h.addNamespace();
    h.ok(['sandbox', 'create', '--netns', ns, 'p']);
    assert.match(h.inNs(ns, 'ip', '-o', 'addr', 'show', 'eth0').stdout, /172\.17\.0\.2/);
    const twice = h.tsnet(['sandbox', 'create', '--netns', ns, 'p2']);
    assert.equal(twice.code, 5, twice.stderr);
    assert.match(twice.stderr, /already the namespace of sandbox p: use --network container:p/);
    // tsnet's own namespace (the host's), by path or by a process living there: refused, nothing changes.
    const linksBefore = h.links();
    const own = h.tsnet(['sandbox', 'create', '--netns', h.nsPath, 'hostile']);
    assert.equal(own.code, 5, own.stderr);
    assert.match(own.stderr, /the host's own network namespace .*--network host/);
    const hostProc = spawn('nsenter', [`--net=${h.nsPath}`, '--', 'sleep', '30'], { stdio: 'ignore' });
    try {
      const hostIno = statSync(h.nsPath).ino;
      assert.ok(await pollUntil(() => netnsInode(hostProc.pid!) === hostIno), 'the process entered the host namespace');
      const byPid = h.tsnet(['sandbox', 'create', '--pid', String(hostProc.pid), 'hostile']);
      assert.equal(byPid.code, 5, byPid.stderr);
      assert.match(byPid.stderr, new RegExp(`namespace of --pid ${hostProc.pid} is the host's own`));
    } finally {
      hostProc.kill('SIGKILL');
    }
    assert.deepEqual(h.links(), linksBefore, 'no endpoint was put into the host namespace');
    assert.doesNotMatch(h.ok(['sandbox', 'ls']), /hostile|p2/);
    h.ok(['sandbox', 'rm', 'p']);
    assert.equal(h.inNs(ns, 'ip', 'link', 'show', 'eth0').code, 1, 'eth0 is gone, the namespace (not ours) stays');

    const child = spawn('unshare', ['--net', 'sleep', '60'], { stdio: 'ignore' });
    try {
      const ours = netnsInode(process.pid);
      assert.ok(await pollUntil(() => ![undefined, ours].includes(netnsInode(child.pid!))), 'the process is in a namespace of its own');
      h.ok(['sandbox', 'create', '--pid', String(child.pid), 'byPid']);
      const inode = readlinkSync(`/proc/${child.pid}/ns/net`);
      assert.match(h.inNs(`/proc/${child.pid}/ns/net`, 'ip', '-o', 'addr', 'show', 'eth0').stdout, /172\.17\.0\.\d+/);
      assert.ok(inode.startsWith('net:['));
      assert.ok(h.ping('byPid', '172.17.0.1'));
    } finally {
      child.kill('SIGKILL');
    }
    assert.ok(await pollUntil(() => processGone(child.pid!)), 'the process is gone');
    // The namespace outlives the process because tsnet pinned it; rm unpins it.
    h.ok(['sandbox', 'rm', 'byPid']);
    assert.equal(h.sh('ls', `${h.runDir}/netns`).stdout.trim(), '');
  }));

test('a sandbox whose namespace disappears is released by the next command', { skip }, () =>
  withHost((h) => {
    const ns = h.addNamespace();
    h.ok(['sandbox', 'create', '--netns', ns, 'gone']);
    const name = ns.split('/').pop()!;
    assert.equal(h.sh('ip', 'netns', 'del', name).code, 0);
    h.ok(['network', 'ls']);
    h.ok(['system', 'reconcile']);
    assert.equal(h.ok(['sandbox', 'ls', '-q']), '');
    assert.equal(Object.keys(h.inspect('network', 'bridge').Containers).length, 0);
    assert.deepEqual(h.links().filter((l) => l.startsWith('tsv')), []);
  }));
