// The plugin executables are a native client of a warm CNI server: the first call
// in a namespace runs directly and starts the server; later calls go to it; a
// server that dies or refuses a caller costs speed, never a result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, skipReason, throwawayNamespace } from '../integration/harness.js';
import { decodeRequest, encodeReply, serveCni } from '../../src/cni/server.js';
import net from 'node:net';
import { randomBytes } from 'node:crypto';

const skip = skipReason('setpriv');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('CNI server wire format: a request decodes; truncated or foreign bytes are refused', () => {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
  const req = Buffer.concat([Buffer.from('TSC1'), str('tsnet-bridge'), u32(2), str('CNI_COMMAND=ADD'), str('A=b=c'), str('{"x":1}')]);
  assert.deepEqual(decodeRequest(req), { plugin: 'tsnet-bridge', env: { CNI_COMMAND: 'ADD', A: 'b=c' }, stdin: '{"x":1}' });
  assert.throws(() => decodeRequest(req.subarray(0, req.length - 1)), /truncated/);
  assert.throws(() => decodeRequest(Buffer.concat([req, Buffer.from('x')])), /trailing/);
  assert.throws(() => decodeRequest(Buffer.from('GET / HTTP/1.1\r\n')), /not a tsnet CNI request/);
  const reply = encodeReply(1, '{"code":7}\n');
  assert.equal(reply.readUInt32LE(0), 1);
  assert.equal(reply.toString('utf8', 8, 8 + reply.readUInt32LE(4)), '{"code":7}\n');
});

test('CNI server: exits when idle, also after a client that left mid-request', { timeout: 10_000 }, async () => {
  const name = `tsnet-cni-test/${randomBytes(6).toString('hex')}`;
  const t0 = Date.now();
  const served = serveCni({ name, idleMs: 300, plugins: {} });
  await sleep(100);
  await new Promise<void>((resolve) => {
    const c = net.connect(`\0${name}`, () => {
      c.write('TSC1\x05');
      setTimeout(() => c.destroy(), 100);
    });
    c.on('close', () => resolve());
    c.on('error', () => undefined);
  });
  await served;
  assert.ok(Date.now() - t0 >= 500, 'it waited for the connection, then for the idle period');
});

test('CNI server: started by the first call, serves the next, refuses other users, and a dead one is replaced', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnisrv-'));
  const ns = throwawayNamespace();
  const container = throwawayNamespace();
  try {
    assert.equal(spawnSync(process.execPath, [join(REPO, 'bin', 'tsnet.js'), 'cni', 'install', '--bin-dir', dir], { encoding: 'utf8' }).status, 0);
    const call = (env: Record<string, string>, stdin = '') =>
      spawnSync(ns.enter([join(dir, 'tsnet-loopback')])[0]!, ns.enter([join(dir, 'tsnet-loopback')]).slice(1), { input: stdin, encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '', ...env } });
    const nsIno = statSync(ns.path).ino;
    const servers = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return statSync(`/proc/${p}/ns/net`).ino === nsIno && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('tsnet-cni-server');
          } catch {
            return false;
          }
        })
        .map(Number);
    const waitFor = async (cond: () => boolean) => {
      for (let i = 0; i < 100 && !cond(); i++) await sleep(50);
      return cond();
    };
    const conf = JSON.stringify({ cniVersion: '1.1.0', name: 'lo-net', type: 'tsnet-loopback' });

    const direct = call({ CNI_COMMAND: 'VERSION', TSNET_CNI_SERVER: '0' });
    assert.equal(direct.status, 0, direct.stderr);
    await sleep(300);
    assert.deepEqual(servers(), [], 'TSNET_CNI_SERVER=0: no server');

    assert.equal(call({ CNI_COMMAND: 'VERSION' }).status, 0);
    // Listening (its abstract socket is in this namespace's table), not only started.
    const listening = () => spawnSync('nsenter', [`--net=${ns.path}`, '--', 'cat', '/proc/net/unix'], { encoding: 'utf8' }).stdout.includes('@tsnet-cni/');
    assert.ok(await waitFor(() => servers().length === 1 && listening()), 'the first call started one server');
    const [pid] = servers();
    const add = call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: container.path, CNI_IFNAME: 'lo' }, conf);
    assert.equal(add.status, 0, add.stdout + add.stderr);
    assert.deepEqual(JSON.parse(add.stdout).ips[0], { address: '127.0.0.1/8', interface: 0 });
    assert.deepEqual(servers(), [pid], 'served by the same server');
    const bad = call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: container.path, CNI_IFNAME: 'lo' }, '{"cniVersion": ');
    assert.equal(JSON.parse(bad.stdout).code, 6, 'errors come back as the spec\'s JSON');

    // Another user reaching root's server by name gets nothing (its own calls use its own name).
    const name = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[2]!;
    const probe = `const s=require('net').connect('\\0${name}'.padEnd(108,'\\0'));s.on('connect',()=>s.end('TSC1'));s.on('data',()=>{console.log('answered');process.exit(0)});s.on('close',()=>{console.log('closed');process.exit(0)});s.on('error',(e)=>{console.log('error '+e.code);process.exit(0)})`;
    const other = spawnSync('nsenter', [`--net=${ns.path}`, '--', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', probe], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    // It did connect (no ECONNREFUSED), and was hung up on without an answer.
    assert.match(other.stdout.trim(), /^(closed|error EPIPE|error ECONNRESET)$/, other.stderr);

    process.kill(pid!, 'SIGKILL');
    await waitFor(() => servers().length === 0);

    // A wedged server (accepts, never answers) under the name the client derives: the call
    // still completes, by itself, once TSNET_CNI_TIMEOUT has passed.
    const bundle = statSync(join(REPO, 'dist', 'cni-plugins', 'tsnet-cni-server.bundle.mjs'), { bigint: true });
    const wedgedName = `tsnet-cni/0/${statSync('/proc/self/ns/mnt').ino}/${bundle.ino}.${bundle.mtimeNs / 1_000_000_000n}.${bundle.mtimeNs % 1_000_000_000n}`;
    const wedged = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, '-e', `require('net').createServer(() => {}).listen(${JSON.stringify('\0' + wedgedName)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((r) => wedged.stdout!.once('data', r));
      const t0 = Date.now();
      const slow = call({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c1', CNI_NETNS: container.path, CNI_IFNAME: 'lo', TSNET_CNI_TIMEOUT: '1' }, conf);
      assert.equal(slow.status, 0, slow.stdout + slow.stderr);
      assert.ok(Date.now() - t0 >= 900, 'it waited for the server first');
    } finally {
      wedged.kill('SIGKILL');
      await new Promise((r) => (wedged.exitCode !== null || wedged.signalCode !== null ? r(null) : wedged.once('exit', r)));
    }
    const again = call({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c1', CNI_NETNS: container.path, CNI_IFNAME: 'lo' }, conf);
    assert.equal(again.status, 0, 'the call after a dead server runs directly');
    assert.ok(await waitFor(() => servers().length === 1 && listening()), 'and a new server starts');
  } finally {
    ns.done();
    container.done();
    rmSync(dir, { recursive: true, force: true });
  }
});
