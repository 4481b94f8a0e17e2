// The CNI skeleton without root: dispatch, version handling, result shapes, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCni, parseCniArgs, type CniPlugin } from '../../src/cni/skel.js';
import { NotFoundError } from '../../src/errors.js';

const calls: string[] = [];
const plugin: CniPlugin = {
  keys: ['bridge'],
  async add(a) {
    calls.push(`add ${a.containerId} ${a.args.K8S_POD_NAME ?? ''}`);
    return { cniVersion: a.conf.cniVersion, ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }] };
  },
  async del() {
    throw new NotFoundError('gone');
  },
  async check() {},
};
const env = { CNI_CONTAINERID: 'c', CNI_NETNS: '/x', CNI_IFNAME: 'eth0' };
const conf = (v = '1.1.0', extra = {}) => JSON.stringify({ cniVersion: v, name: 'n', type: 't', ...extra });

test('ADD dispatches with parsed CNI_ARGS and shapes the result for the requested version', async () => {
  const r = await runCni(plugin, { env: { ...env, CNI_COMMAND: 'ADD', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web' }, stdin: conf('1.0.0', { bridge: 'br0' }) });
  assert.equal(r.code, 0);
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }] });
  assert.deepEqual(calls, ['add c web']);
  const old = await runCni(plugin, { env: { ...env, CNI_COMMAND: 'ADD' }, stdin: conf('0.3.1') });
  assert.equal(JSON.parse(old.stdout).ips[0].version, '4');
});

test('errors: typed tsnet errors map to CNI codes; the version echoes the configuration', async () => {
  const r = await runCni(plugin, { env: { ...env, CNI_COMMAND: 'DEL' }, stdin: conf('1.0.0') });
  assert.equal(r.code, 1);
  // Not the spec's 3 ("container unknown": the runtime would skip its cleanup) but ours.
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.0.0', code: 106, msg: 'gone' });
  assert.deepEqual(parseCniArgs('A=1;B=x=y'), { A: '1', B: 'x=y' });
});

test('names, ids and interface names are checked before a plugin runs', async () => {
  const codeOf = async (e: Record<string, string>, stdin = conf()) => JSON.parse((await runCni(plugin, { env: { ...env, CNI_COMMAND: 'ADD', ...e }, stdin })).stdout).code;
  assert.equal(await codeOf({}, conf('1.1.0', { name: 'a"b' })), 7);
  assert.equal(await codeOf({}, conf('1.1.0', { name: '-a' })), 7);
  assert.equal(await codeOf({ CNI_CONTAINERID: 'a\nb' }), 4);
  assert.equal(await codeOf({ CNI_CONTAINERID: 'x'.repeat(1000) }), undefined, 'long ids are fine (the reference takes them)');
  assert.equal(await codeOf({ CNI_IFNAME: 'eth:0' }), 4);
  assert.equal(await codeOf({ CNI_IFNAME: 'a'.repeat(16) }), 4);
  assert.equal(await codeOf({ CNI_COMMAND: 'constructor' }), 4);
  assert.equal(await codeOf({ CNI_COMMAND: 'hasOwnProperty' }), 4);
});
