// The plugin executables are a native client of a warm CNI server: the first call
// in a namespace runs directly and starts the server; later calls go to it; a
// server that dies or refuses a caller costs speed, never a result. The server's
// socket sits in RUN/cni, which only root can write, and the client talks only to
// a root (or its own uid) listener: another local user can neither take the name
// nor receive a byte of a call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { REPO, installCni, pollUntil, skipReason, throwawayNamespace } from '../integration/harness.js';
import { decodeRequest, encodeReply, serveCni } from '../../src/cni/server.js';

const skip = skipReason('setpriv');
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** The socket path the native client derives (FNV-1a 64 of uid, netns, mount ns and the server bundle). */
function clientSocketPath(run: string, nsPath: string, uid = 0): string {
  const netns = statSync(nsPath);
  const mnt = statSync('/proc/self/ns/mnt');
  const b = statSync(join(REPO, 'dist', 'cni-plugins', 'tsnet-cni-server.bundle.mjs'), { bigint: true });
  const identity = `${uid}/${netns.dev}:${netns.ino}/${mnt.ino}/${b.ino}.${b.mtimeNs / 1_000_000_000n}.${b.mtimeNs % 1_000_000_000n}`;
  let h = 14695981039346656037n;
  for (const c of Buffer.from(identity)) h = ((h ^ BigInt(c)) * 1099511628211n) & 0xffffffffffffffffn;
  return join(run, 'cni', `${h.toString(16).padStart(16, '0')}.sock`);
}

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

test('CNI server: one per name; exits when idle (also after a client that left mid-request) and leaves no files', { timeout: 10_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnisrv-'));
  const path = join(dir, 'run', 'cni', 'x.sock');
  try {
    const served = serveCni({ path, idleMs: 300, plugins: {} });
    let doneAt = 0;
    void served.then(() => (doneAt = Date.now()));
    assert.ok(await pollUntil(() => existsSync(path)), 'the server listens');
    assert.equal(statSync(join(dir, 'run', 'cni')).mode & 0o777, 0o700, 'the socket directory is private');
    assert.equal(await serveCni({ path, idleMs: 300, plugins: {} }), false, 'a second server for the name steps back');
    let closedAt = 0;
    await new Promise<void>((resolve) => {
      const c = net.connect(path, () => {
        c.write('TSC1\x05');
        setTimeout(() => c.destroy(), 100);
      });
      c.on('close', () => {
        closedAt = Date.now();
        resolve();
      });
      c.on('error', () => undefined);
    });
    assert.equal(await served, true);
    assert.ok(closedAt > 0 && doneAt >= closedAt, 'it stayed up while the connection was open');
    assert.ok(doneAt - closedAt >= 250, `then waited for the idle period (${doneAt - closedAt} ms after the client left)`);
    assert.deepEqual(readdirSync(join(dir, 'run', 'cni')), [], 'socket and lock file are gone');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CNI server: refuses a socket directory that others can write to', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnisrv-'));
  try {
    mkdirSync(join(dir, 'cni'));
    chmodSync(join(dir, 'cni'), 0o777);
    await assert.rejects(serveCni({ path: join(dir, 'cni', 'x.sock'), idleMs: 300, plugins: {} }), /only its owner/);
    assert.ok(!existsSync(join(dir, 'cni', 'x.sock')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function fixture() {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-cnisrv-'));
  const run = join(dir, 'run');
  const ns = throwawayNamespace();
  const container = throwawayNamespace();
  const inst = installCni(join(dir, 'bin'), run);
  assert.equal(inst.code, 0, inst.stderr);
  const plugin = (name: string) => ns.enter([join(dir, 'bin', name)]);
  const call = (env: Record<string, string>, stdin = '', name = 'tsnet-loopback') => {
    const argv = plugin(name);
    return spawnSync(argv[0]!, argv.slice(1), { input: stdin, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', ...env } });
  };
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
  const waitFor = (cond: () => boolean) => pollUntil(cond);
  /** Processes in the namespace that are a server or a client's fork on its way to one. */
  const spawned = () =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
          return statSync(`/proc/${p}/ns/net`).ino === nsIno && (cmd.includes('tsnet-cni-server') || cmd.includes(join(dir, 'bin')));
        } catch {
          return false;
        }
      });
  const sock = clientSocketPath(run, ns.path);
  const listening = () => existsSync(sock) && spawnSync('nsenter', [`--net=${ns.path}`, '--', 'cat', '/proc/net/unix'], { encoding: 'utf8' }).stdout.includes(sock);
  return {
    dir, run, ns, container, call, servers, spawned, waitFor, sock, listening,
    done: () => {
      ns.done();
      container.done();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const loConf = JSON.stringify({ cniVersion: '1.1.0', name: 'lo-net', type: 'tsnet-loopback' });

test('CNI server: started by the first call, serves the next; other users cannot reach it; a dead or wedged one costs only time', { skip, timeout: 90_000 }, async () => {
  const f = fixture();
  try {
    const lo = { CNI_CONTAINERID: 'c1', CNI_NETNS: f.container.path, CNI_IFNAME: 'lo' };
    const direct = f.call({ CNI_COMMAND: 'VERSION', TSNET_CNI_SERVER: '0' });
    assert.equal(direct.status, 0, direct.stderr);
    // A server would have been forked before the client's own call ran, so it would exist now
    // (as the client binary until it execs Node, then as the server): no need to wait.
    assert.deepEqual(f.spawned(), [], 'TSNET_CNI_SERVER=0: no server was started');

    assert.equal(f.call({ CNI_COMMAND: 'VERSION' }).status, 0);
    assert.ok(await f.waitFor(() => f.servers().length === 1 && f.listening()), 'the first call started one server, listening where the client looks');
    const [pid] = f.servers();
    const add = f.call({ CNI_COMMAND: 'ADD', ...lo }, loConf);
    assert.equal(add.status, 0, add.stdout + add.stderr);
    assert.deepEqual(JSON.parse(add.stdout).ips[0], { address: '127.0.0.1/8', interface: 0 });
    assert.deepEqual(f.servers(), [pid], 'served by the same server');
    const bad = f.call({ CNI_COMMAND: 'ADD', ...lo }, '{"cniVersion": ');
    assert.equal(JSON.parse(bad.stdout).code, 6, "errors come back as the spec's JSON");

    // Another user cannot even reach the socket (its directory is root's, 0700).
    const probe = `const s=require('net').connect(${JSON.stringify(f.sock)});s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',(e)=>{console.log('error '+e.code);process.exit(0)})`;
    const other = spawnSync('nsenter', [`--net=${f.ns.path}`, '--', ...NOBODY, process.execPath, '-e', probe], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.equal(other.stdout.trim(), 'error EACCES', other.stderr);

    process.kill(pid!, 'SIGKILL');
    await f.waitFor(() => f.servers().length === 0);

    // A wedged server (root's: accepts, never answers) at the client's path: the call
    // still completes, by itself, once TSNET_CNI_TIMEOUT has passed.
    rmSync(f.sock, { force: true });
    const wedged = spawn('nsenter', [`--net=${f.ns.path}`, '--', process.execPath, '-e', `require('net').createServer(() => {}).listen(${JSON.stringify(f.sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((r) => wedged.stdout!.once('data', r));
      const t0 = Date.now();
      const slow = f.call({ CNI_COMMAND: 'CHECK', ...lo, TSNET_CNI_TIMEOUT: '1' }, loConf);
      assert.equal(slow.status, 0, slow.stdout + slow.stderr);
      assert.ok(Date.now() - t0 >= 900, 'it waited for the server first');
    } finally {
      wedged.kill('SIGKILL');
      await new Promise((r) => (wedged.exitCode !== null || wedged.signalCode !== null ? r(null) : wedged.once('exit', r)));
    }
    const again = f.call({ CNI_COMMAND: 'CHECK', ...lo }, loConf);
    assert.equal(again.status, 0, 'the call after a dead server runs directly');
    assert.ok(await f.waitFor(() => f.servers().length === 1 && f.listening()), 'and a new server starts (over the dead one\'s socket file)');
  } finally {
    f.done();
  }
});

test('CNI client: a socket of another user at the server\'s path gets not a byte, and the call is done for real without waiting', { skip, timeout: 90_000 }, async () => {
  const f = fixture();
  const squatDir = mkdtempSync(join(tmpdir(), 'tsnet-squat-'));
  chmodSync(squatDir, 0o777);
  try {
    // The unprivileged user cannot create anything in the socket directory itself.
    mkdirSync(join(f.run, 'cni'), { recursive: true, mode: 0o700 });
    const tryBind = `require('net').createServer().listen(${JSON.stringify(join(f.run, 'cni', 'mine.sock'))}).on('error',(e)=>{console.log('error '+e.code);process.exit(0)}).on('listening',()=>{console.log('bound');process.exit(0)})`;
    const denied = spawnSync('nsenter', [`--net=${f.ns.path}`, '--', ...NOBODY, process.execPath, '-e', tryBind], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.equal(denied.stdout.trim(), 'error EACCES', denied.stderr);

    // Simulate a socket that got there anyway (a mistake by root): a listener owned by nobody
    // that answers with a made-up result and records what it received.
    const squatSock = join(squatDir, 's.sock');
    const received = join(squatDir, 'received');
    const squatter = spawn(
      'nsenter',
      [`--net=${f.ns.path}`, '--', ...NOBODY, process.execPath, '-e', `
        const fs = require('fs'); let n = 0;
        require('net').createServer({ allowHalfOpen: true }, (s) => {
          s.on('error', () => {}); s.on('data', (d) => { n += d.length; fs.writeFileSync(${JSON.stringify(received)}, String(n)); });
          s.on('end', () => s.end(Buffer.from([0,0,0,0, 2,0,0,0, 0x7b,0x7d, 0,0,0,0])));
        }).listen(${JSON.stringify(squatSock)}, () => console.log('up'));`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise((r) => squatter.stdout!.once('data', r));
      renameSync(squatSock, f.sock); // root moves it to the exact path the client will use
      const bridge = JSON.stringify({
        cniVersion: '1.1.0', name: 'sq', type: 'tsnet-bridge', bridge: 'sq0', isGateway: true,
        ipam: { type: 'tsnet-ipam', ranges: [[{ subnet: '10.77.0.0/24' }]], dataDir: join(f.dir, 'ipam') },
      });
      const t0 = Date.now();
      const add = f.call({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'sq1', CNI_NETNS: f.container.path, CNI_IFNAME: 'eth0', TSNET_CNI_TIMEOUT: '30' }, bridge, 'tsnet-bridge');
      assert.equal(add.status, 0, add.stdout + add.stderr);
      assert.ok(Date.now() - t0 < 10_000, 'no wait for the squatter');
      assert.equal(JSON.parse(add.stdout).ips[0].address, '10.77.0.2/24', 'a real result, not the squatter\'s {}');
      assert.match(spawnSync('ip', ['-n', f.container.name, 'addr', 'show', 'eth0'], { encoding: 'utf8' }).stdout, /10\.77\.0\.2\/24/, 'and the interface really exists');
      assert.ok(!existsSync(received), 'the squatter received nothing');
      const del = f.call({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'sq1', CNI_IFNAME: 'eth0' }, bridge, 'tsnet-bridge');
      assert.equal(del.status, 0, del.stdout);
    } finally {
      squatter.kill('SIGKILL');
    }
  } finally {
    f.done();
    rmSync(squatDir, { recursive: true, force: true });
  }
});
