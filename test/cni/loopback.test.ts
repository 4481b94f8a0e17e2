// tsnet-loopback driven exactly as an orchestrator drives a CNI plugin: the
// installed executable, CNI_* variables, the configuration on stdin, fresh namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { installCni, skipReason, throwawayNamespace } from '../integration/harness.js';

const skip = skipReason();

// The plugin (and the CNI server it starts) runs in a throwaway host namespace.
function installed(): { bin: string[]; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnibin-'));
  const r = installCni(join(dir, 'bin'), join(dir, 'run'));
  assert.equal(r.code, 0, r.stderr);
  const ns = throwawayNamespace();
  return {
    bin: ns.enter([join(dir, 'bin', 'tsnet-loopback')]),
    done: () => {
      ns.done();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function invoke(bin: string[], env: Record<string, string>, stdin: string): { code: number; out: any; raw: string; stderr: string } {
  const r = spawnSync(bin[0]!, bin.slice(1), { input: stdin, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', NODE_EXTRA_CA_CERTS: '', ...env } });
  let out: unknown;
  try {
    out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    out = Symbol('not JSON');
  }
  return { code: r.status ?? -1, out, raw: r.stdout, stderr: r.stderr };
}

const conf = (over: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.1.0', name: 'lo-net', type: 'tsnet-loopback', ...over });

test('tsnet-loopback: ADD, CHECK, DEL (twice, without netns, after the namespace is gone), VERSION, GC, STATUS', { skip }, () => {
  const { bin, done } = installed();
  const name = `tsnet-cni-${randomBytes(3).toString('hex')}`;
  spawnSync('ip', ['netns', 'add', name]);
  const netns = `/run/netns/${name}`;
  const env = { CNI_CONTAINERID: 'c1', CNI_NETNS: netns, CNI_IFNAME: 'lo' };
  try {
    const v = invoke(bin, { CNI_COMMAND: 'VERSION' }, '');
    assert.equal(v.code, 0);
    assert.deepEqual(v.out.supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);

    const add = invoke(bin, { ...env, CNI_COMMAND: 'ADD' }, conf());
    assert.equal(add.code, 0, add.raw);
    assert.equal(add.out.cniVersion, '1.1.0');
    assert.deepEqual(add.out.ips, [{ address: '127.0.0.1/8', interface: 0 }, { address: '::1/128', interface: 0 }]);
    assert.match(spawnSync('ip', ['-n', name, 'link', 'show', 'lo'], { encoding: 'utf8' }).stdout, /UP/);
    const old = invoke(bin, { ...env, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '0.4.0' }));
    assert.equal(old.out.ips[0].version, '4', '0.4.0 results carry the IP version');

    assert.equal(invoke(bin, { ...env, CNI_COMMAND: 'CHECK' }, conf()).code, 0);
    spawnSync('ip', ['-n', name, 'link', 'set', 'lo', 'down']);
    const bad = invoke(bin, { ...env, CNI_COMMAND: 'CHECK' }, conf());
    assert.equal(bad.code, 1);
    assert.equal(bad.out.code, 102, 'CHECK notices lo is down');

    for (const e of [env, env, { CNI_CONTAINERID: 'c1', CNI_IFNAME: 'lo' }]) {
      const del = invoke(bin, { ...e, CNI_COMMAND: 'DEL' }, conf());
      assert.equal(del.code, 0, del.raw);
      assert.equal(del.raw, '', 'DEL prints nothing');
    }
    assert.equal(invoke(bin, { CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': [] })).code, 0);
    assert.equal(invoke(bin, { CNI_COMMAND: 'STATUS' }, conf()).code, 0);
    spawnSync('ip', ['netns', 'del', name]);
    assert.equal(invoke(bin, { ...env, CNI_COMMAND: 'DEL' }, conf()).code, 0, 'DEL after the namespace is gone');
  } finally {
    spawnSync('ip', ['netns', 'del', name]);
    done();
  }
});

test('tsnet-loopback: malformed input gets the spec\'s error codes, as JSON on stdout', { skip }, () => {
  const { bin, done } = installed();
  const env = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/does-not-exist', CNI_IFNAME: 'lo' };
  try {
    const cases: Array<[string, Record<string, string>, string, number]> = [
      ['malformed JSON', { ...env, CNI_COMMAND: 'ADD' }, '{"cniVersion": ', 6],
      ['not an object', { ...env, CNI_COMMAND: 'ADD' }, '[1]', 6],
      ['unsupported version', { ...env, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '9.9.9' }), 1],
      ['missing version', { ...env, CNI_COMMAND: 'ADD' }, JSON.stringify({ name: 'x', type: 'tsnet-loopback' }), 1],
      ['unknown field', { ...env, CNI_COMMAND: 'ADD' }, conf({ frobnicate: true }), 2],
      ['no name', { ...env, CNI_COMMAND: 'ADD' }, conf({ name: '' }), 7],
      ['no CNI_COMMAND', { ...env }, conf(), 4],
      ['unknown CNI_COMMAND', { ...env, CNI_COMMAND: 'FROB' }, conf(), 4],
      ['ADD without CNI_NETNS', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'lo' }, conf(), 4],
      ['bad CNI_ARGS', { ...env, CNI_COMMAND: 'ADD', CNI_ARGS: 'novalue' }, conf(), 4],
      ['ADD into a missing namespace', { ...env, CNI_COMMAND: 'ADD' }, conf(), 3],
      ['GC before 1.1.0', { CNI_COMMAND: 'GC' }, conf({ cniVersion: '1.0.0' }), 1],
    ];
    for (const [what, e, stdin, code] of cases) {
      const r = invoke(bin, e, stdin);
      assert.equal(r.code, 1, `${what}: exit status`);
      assert.equal(typeof r.out, 'object', `${what}: stdout is one JSON object (${r.raw})`);
      assert.equal(r.out.code, code, `${what}: ${r.out.msg}`);
      assert.ok(r.out.msg, `${what}: has a message`);
    }
  } finally {
    done();
  }
});

test('tsnet cni install refuses to overwrite a plugin it did not write', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnibin-'));
  try {
    writeFileSync(join(dir, 'tsnet-loopback'), '#!/bin/sh\necho not ours\n');
    const r = installCni(dir, join(dir, 'run'));
    assert.equal(r.code, 5);
    assert.match(r.stderr, /not written by tsnet/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tsnet cni install --conf-dir writes an example conflist that the plugins accept', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cniconf-'));
  const ns = throwawayNamespace();
  try {
    const r = installCni(join(dir, 'bin'), join(dir, 'run'), ['--conf-dir', join(dir, 'net.d')]);
    assert.equal(r.code, 0, r.stderr);
    const conf = JSON.parse(readFileSync(join(dir, 'net.d', '10-tsnet.conflist'), 'utf8'));
    assert.deepEqual(conf.plugins.map((p: { type: string }) => p.type), ['tsnet-bridge', 'tsnet-portmap']);
    // Each plugin entry, as the runtime hands it over (name and version added), passes the plugin's key check.
    for (const p of conf.plugins) {
      const v = invoke(ns.enter([join(dir, 'bin', p.type)]), { CNI_COMMAND: 'STATUS' }, JSON.stringify({ cniVersion: conf.cniVersion, name: conf.name, ...p }));
      assert.equal(v.code, 0, `${p.type}: ${v.raw}`);
    }
  } finally {
    ns.done();
    rmSync(dir, { recursive: true, force: true });
  }
});
