// The userland proxy in-process on loopback (no root needed): TCP through both
// relays (native splice and Node streams), half-close, UDP per-client flows, and
// releasing a port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { relayAddon } from '../../src/system/real/addon.js';
import { UserlandProxy } from '../../src/portmapper/proxy/server.js';
import { silentLogger } from '../../src/log.js';

function tcpEcho(): Promise<net.Server> {
  return new Promise((resolve) => {
    // Echo everything, then close after the client's half-close (tests FIN both ways).
    const s = net.createServer({ allowHalfOpen: true }, (c) => {
      c.on('error', () => undefined);
      c.pipe(c);
    });
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end(payload));
    c.on('data', (d) => chunks.push(d));
    c.on('end', () => resolve(Buffer.concat(chunks)));
    c.on('error', reject);
  });
}

const tryBind = (port: number) =>
  new Promise<string>((resolve) =>
    net
      .createServer()
      .listen(port, '127.0.0.1')
      .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''))
      .on('listening', function (this: net.Server) {
        this.close();
        resolve('bound');
      }),
  );
const tryConnect = (port: number) =>
  new Promise<string>((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''));
  });

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

for (const mode of ['splice', 'streams'] as const) {
  test(`TCP through the proxy (${mode}): 4 MiB both ways with half-close; the port is held, then released`, async () => {
    const echo = await tcpEcho();
    const target = (echo.address() as net.AddressInfo).port;
    const port = await freePort();
    const proxy = new UserlandProxy(relayAddon(), { udpIdleMs: 1000, tcp: mode, log: silentLogger() });
    const binding = { proto: 'tcp' as const, hostIP: '127.0.0.1', hostPort: port, targetIP: '127.0.0.1', targetPort: target };
    try {
      assert.equal(proxy.handle({ op: 'sync', bindings: [binding], activate: false }).ok, true);
      // Held but not serving yet: a second bind fails (even with SO_REUSEADDR), and a connection
      // waits without an answer until the relay serves the port.
      assert.equal(await tryBind(port), 'EADDRINUSE');
      const waiting = net.connect(port, '127.0.0.1');
      const early: Buffer[] = [];
      waiting.on('data', (d) => early.push(d));
      waiting.write('early');
      await new Promise((r) => setTimeout(r, 100)); // an absence: the echo would answer in well under this
      assert.deepEqual(early, [], 'nothing answers while the port is only held');
      const again = proxy.handle({ op: 'sync', bindings: [binding], activate: true });
      assert.equal(again.ok, true);
      const payload = Buffer.alloc(4 << 20, 7);
      payload.write('tsnet');
      // Once served, the waiting connection is relayed too.
      const echoed = await new Promise<string>((resolve) => {
        waiting.once('data', (d) => resolve(d.toString()));
        if (early.length) resolve(Buffer.concat(early).toString());
      });
      assert.equal(echoed, 'early');
      waiting.destroy();
      const back = await roundTrip(port, payload);
      assert.equal(back.length, payload.length);
      assert.ok(back.equals(payload));
      assert.equal(await tryBind(port), 'EADDRINUSE');
      // Many at once: 200 concurrent round trips, each answered in full.
      const many = await Promise.all(Array.from({ length: 200 }, (_, i) => roundTrip(port, Buffer.from(`hello ${i}`))));
      assert.deepEqual(many.map((b) => b.toString()), Array.from({ length: 200 }, (_, i) => `hello ${i}`));
      proxy.handle({ op: 'sync', bindings: [], activate: true });
      assert.equal(proxy.size, 0);
      // The relay's loops close the socket on their own threads: poll until they have.
      let gone = await tryConnect(port);
      for (let i = 0; i < 100 && gone !== 'ECONNREFUSED'; i++) gone = await tryConnect(port);
      assert.equal(gone, 'ECONNREFUSED', 'the listener closed on removal');
    } finally {
      echo.close();
    }
  });

  test(`TCP through the proxy (${mode}): a target that refuses closes the client's connection`, async () => {
    const port = await freePort();
    const dead = await freePort();
    const proxy = new UserlandProxy(relayAddon(), { udpIdleMs: 1000, tcp: mode, log: silentLogger() });
    try {
      proxy.handle({ op: 'sync', bindings: [{ proto: 'tcp', hostIP: '127.0.0.1', hostPort: port, targetIP: '127.0.0.1', targetPort: dead }], activate: true });
      const outcome = await new Promise<string>((resolve) => {
        const c = net.connect(port, '127.0.0.1');
        c.on('data', () => resolve('data'));
        c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        c.on('close', () => resolve('closed'));
        setTimeout(() => resolve('still open'), 3000);
      });
      assert.match(outcome, /^(closed|ECONNRESET)$/);
    } finally {
      proxy.handle({ op: 'sync', bindings: [], activate: true });
    }
  });
}

test('UDP through the proxy: replies reach each client, flows are per client address', async () => {
  const server = dgram.createSocket('udp4');
  server.on('message', (m, r) => server.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address));
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  const target = server.address().port;
  const port = await freePort();
  const proxy = new UserlandProxy(relayAddon(), { udpIdleMs: 1000, tcp: 'splice', log: silentLogger() });
  try {
    proxy.handle({ op: 'sync', bindings: [{ proto: 'udp', hostIP: '127.0.0.1', hostPort: port, targetIP: '127.0.0.1', targetPort: target }], activate: true });
    const ask = (text: string) =>
      new Promise<string>((resolve) => {
        const c = dgram.createSocket('udp4');
        c.on('message', (m) => {
          c.close();
          resolve(m.toString());
        });
        c.send(text, port, '127.0.0.1');
      });
    assert.deepEqual(await Promise.all([ask('a'), ask('b'), ask('c')]), ['re:a', 're:b', 're:c']);
  } finally {
    proxy.handle({ op: 'sync', bindings: [], activate: true });
    server.close();
  }
});

test('a port another program holds is lost, reported on every sync, and taken back once free', async () => {
  const port = await freePort();
  const other = await new Promise<net.Server>((r) => {
    const srv = net.createServer().listen(port, '127.0.0.1', () => r(srv));
  });
  const proxy = new UserlandProxy(relayAddon(), { udpIdleMs: 1000, tcp: 'splice', log: silentLogger() });
  const binding = { proto: 'tcp' as const, hostIP: '127.0.0.1', hostPort: port, targetIP: '127.0.0.1', targetPort: 9 };
  try {
    const r = proxy.handle({ op: 'sync', bindings: [binding], activate: true });
    assert.equal(r.ok, false);
    assert.deepEqual(r.errors, [{ binding, code: 'EADDRINUSE' }]);
    assert.equal(proxy.size, 1, 'still wanted');
    assert.deepEqual(proxy.wanted(), { bindings: [binding], activate: true }, 'and persisted as wanted');
    assert.equal(proxy.handle({ op: 'status' }).errors?.length, 1);
    assert.equal(proxy.retryLost(), 0, 'not while the other program holds it');
    await new Promise<void>((r) => other.close(() => r()));
    assert.equal(proxy.retryLost(), 1);
    assert.deepEqual(proxy.handle({ op: 'status' }).errors, []);
    assert.equal(await tryBind(port), 'EADDRINUSE', 'held by the proxy now');
  } finally {
    other.close();
    proxy.handle({ op: 'sync', bindings: [], activate: true });
  }
});
