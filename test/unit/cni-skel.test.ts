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
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.0.0', code: 3, msg: 'gone' });
  assert.deepEqual(parseCniArgs('A=1;B=x=y'), { A: '1', B: 'x=y' });
});
