// Image distribution logic: the registry client against a fake registry on
// loopback (token flow, basic auth, redirects, errors), challenge parsing,
// platform choice, familiar names, `import -c` changes, the tar writer, zstd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { parseChallenge, RegistryClient, isLoopbackHost, readAll, dockerCredentials } from '../../src/runtime/images/registry.js';
import { pickPlatform, goArch } from '../../src/runtime/images/pull.js';
import { parseRef, refKey } from '../../src/runtime/images/ref.js';
import { parseChanges } from '../../src/runtime/spec.js';
import { TarReader, tarHeader, tarPadding, TAR_END, type TarHeader } from '../../src/runtime/images/tar.js';
import { zstdAddon } from '../../src/system/real/addon.js';
import { InvalidConfigError, NotFoundError } from '../../src/errors.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('WWW-Authenticate challenges: Bearer with quoted parameters, Basic', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' },
  });
  assert.deepEqual(parseChallenge('Basic realm="x \\"y\\""'), { scheme: 'basic', params: { realm: 'x "y"' } });
  assert.deepEqual(parseChallenge('Bearer realm=http://t/token'), { scheme: 'bearer', params: { realm: 'http://t/token' } });
  assert.equal(parseChallenge(''), undefined);
});

test('registry names: loopback hosts are insecure by default; Docker Hub names take their familiar form', () => {
  assert.ok(isLoopbackHost('localhost:5000'));
  assert.ok(isLoopbackHost('127.0.0.1:5000'));
  assert.ok(isLoopbackHost('[::1]:5000'));
  assert.ok(!isLoopbackHost('registry.example:5000'));
  assert.equal(refKey(parseRef('docker.io/library/busybox')), 'busybox:latest');
  assert.equal(refKey(parseRef('docker.io/team/app:1')), 'team/app:1');
  assert.equal(refKey(parseRef('library/busybox:1')), 'busybox:1');
  assert.equal(refKey(parseRef('quay.io/library/x:1')), 'quay.io/library/x:1', 'only Docker Hub is shortened');
});

test('platform: linux and this architecture from an index; attestation entries are never picked', () => {
  const m = [
    { digest: 'sha256:' + 'a'.repeat(64), platform: { os: 'linux', architecture: 'arm64' } },
    { digest: 'sha256:' + 'b'.repeat(64), platform: { os: 'unknown', architecture: 'unknown' } },
    { digest: 'sha256:' + 'c'.repeat(64), platform: { os: 'linux', architecture: 'amd64' } },
  ];
  assert.equal(pickPlatform(m, 'amd64')?.digest, 'sha256:' + 'c'.repeat(64));
  assert.equal(pickPlatform(m, 'arm64')?.digest, 'sha256:' + 'a'.repeat(64));
  assert.equal(pickPlatform(m, 's390x'), undefined);
  assert.equal(goArch('x64'), 'amd64');
});

test('import -c: Dockerfile instructions as image config', () => {
  assert.deepEqual(parseChanges(['CMD ["/bin/sh", "-c", "echo"]', 'ENTRYPOINT top -b', 'ENV A=1 B="two words"', 'ENV C 3', 'EXPOSE 80 53/udp', 'LABEL k=v', 'USER app', 'WORKDIR /srv', 'STOPSIGNAL SIGINT', 'VOLUME /data']), {
    Cmd: ['/bin/sh', '-c', 'echo'],
    Entrypoint: ['/bin/sh', '-c', 'top -b'],
    Env: ['A=1', 'B=two words', 'C=3'],
    ExposedPorts: { '80/tcp': {}, '53/udp': {} },
    Labels: { k: 'v' },
    User: 'app',
    WorkingDir: '/srv',
    StopSignal: 'SIGINT',
    Volumes: { '/data': {} },
  });
  assert.throws(() => parseChanges(['RUN make']), /RUN is not one of/);
  assert.throws(() => parseChanges(['CMD ["a", 1]']), /JSON list of strings/);
  assert.throws(() => parseChanges(['WORKDIR rel']), /absolute/);
  assert.throws(() => parseChanges(['EXPOSE http']), InvalidConfigError);
  assert.throws(() => parseChanges(['STOPSIGNAL SIGNOPE']), InvalidConfigError);
});

test('tar writer: headers the reader reads back, base-256 sizes, padding', () => {
  const entries: TarHeader[] = [];
  const bodies: Buffer[] = [];
  const r = new TarReader({ entry: (h) => entries.push(h), data: (c) => bodies.push(c), end: () => {} });
  const body = Buffer.from('hello');
  r.write(Buffer.concat([tarHeader('d/', { dir: true, mtime: 5 }), tarHeader('d/f', { size: body.length, mtime: 5 }), body, tarPadding(body.length), TAR_END]));
  r.close();
  assert.deepEqual(entries.map((e) => [e.name, e.type, e.size, e.mtime]), [['d/', 'dir', 0, 5], ['d/f', 'file', 5, 5]]);
  assert.equal(Buffer.concat(bodies).toString(), 'hello');
  const big = tarHeader('big', { size: 2 ** 34 });
  assert.equal(big[124], 0x80, 'sizes over 8 GiB in base-256');
  assert.throws(() => tarHeader('x'.repeat(100), {}), /too long/);
  // GNU tar reads it too.
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-tarw-'));
  try {
    writeFileSync(join(dir, 'a.tar'), Buffer.concat([tarHeader('d/', { dir: true }), tarHeader('d/f', { size: 5 }), body, tarPadding(5), TAR_END]));
    const t = spawnSync('tar', ['-tvf', join(dir, 'a.tar')], { encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /d\/f/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('zstd: the native decoder inflates in any chunking and reports a truncated stream', { skip: spawnSync('sh', ['-c', 'command -v zstd']).status !== 0 && 'zstd is not installed' }, () => {
  const plain = Buffer.alloc(300_000, 'tsnet layer ');
  const z = spawnSync('zstd', ['-q', '-c'], { input: plain }).stdout as Buffer;
  for (const size of [1, 7, 4096, z.length]) {
    const d = new (zstdAddon().Decoder)();
    const out: Buffer[] = [];
    for (let i = 0; i < z.length; i += size) out.push(d.push(z.subarray(i, i + size)));
    assert.ok(d.end(), `complete at chunk size ${size}`);
    assert.ok(Buffer.concat(out).equals(plain));
  }
  const d = new (zstdAddon().Decoder)();
  d.push(z.subarray(0, z.length - 3));
  assert.equal(d.end(), false, 'cut short');
  assert.throws(() => new (zstdAddon().Decoder)().push(Buffer.from('not zstd at all')), /zstd: /);
});

/** A fake registry with Docker's token flow: /token hands out a token for basic credentials. */
async function fakeRegistry(handler: (req: IncomingMessage, res: ServerResponse, base: string) => void) {
  const server = createServer((req, res) => handler(req, res, `http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { host, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test('registry client: a 401 Bearer challenge gets a token from the realm (with the login), then a redirect to blob storage drops it', async () => {
  const seen: string[] = [];
  const storage = await fakeRegistry((req, res) => {
    seen.push(`storage ${req.url} ${req.headers.authorization ?? '-'}`);
    res.writeHead(200).end('blob-bytes');
  });
  const reg = await fakeRegistry((req, res, base) => {
    seen.push(`${req.url} ${req.headers.authorization ?? '-'}`);
    if (req.url!.startsWith('/token')) {
      const u = new URL(req.url!, base);
      if (req.headers.authorization !== `Basic ${Buffer.from('me:pw').toString('base64')}`) return res.writeHead(401).end();
      assert.equal(u.searchParams.get('scope'), 'repository:team/app:pull');
      assert.equal(u.searchParams.get('service'), 'fake');
      return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'T0K' }));
    }
    if (req.headers.authorization !== 'Bearer T0K') {
      return res.writeHead(401, { 'www-authenticate': `Bearer realm="${base}/token",service="fake",scope="repository:team/app:pull"` }).end();
    }
    if (req.url === '/v2/team/app/manifests/1') {
      return res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] }));
    }
    if (req.url!.startsWith('/v2/team/app/blobs/')) return res.writeHead(307, { location: `http://${storage.host}/x` }).end();
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
  });
  try {
    const c = new RegistryClient({ insecure: () => true, certsDirs: [], credentials: (h) => (h === reg.host ? { username: 'me', password: 'pw' } : undefined), timeoutMs: 5000 });
    const m = await c.manifest(reg.host, 'team/app', '1');
    assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const b = await c.blob(reg.host, 'team/app', `sha256:${'0'.repeat(64)}`);
    assert.equal((await readAll(b.body, 100)).toString(), 'blob-bytes');
    assert.ok(seen.includes('storage /x -'), `the token stays with the registry's host: ${seen.join(', ')}`);
    await assert.rejects(c.manifest(reg.host, 'team/app', 'nope'), (e: Error) => e instanceof NotFoundError && /manifest unknown/.test(e.message));
    // The token is reused: one token request in all.
    assert.equal(seen.filter((s) => s.startsWith('/token')).length, 1);
    // Wrong credentials: the token service's 401 is the error.
    const bad = new RegistryClient({ insecure: () => true, certsDirs: [], credentials: () => ({ username: 'me', password: 'no' }), timeoutMs: 5000 });
    await assert.rejects(bad.manifest(reg.host, 'team/app', '1'), /token service of .* answered 401/);
    // Not insecure: HTTPS only, and the error says how to allow HTTP.
    const strict = new RegistryClient({ insecure: () => false, certsDirs: [], credentials: () => undefined, timeoutMs: 5000 });
    await assert.rejects(strict.manifest(reg.host, 'team/app', '1'), /cannot reach registry .*--insecure/);
  } finally {
    await reg.close();
    await storage.close();
  }
});

test('docker config credentials: auth (base64) and username/password, by host', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-dcfg-'));
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { 'r.example:5000': { auth: Buffer.from('u:p:colon').toString('base64') }, 'https://index.docker.io/v1/': { username: 'hub', password: 'h' } } }));
    const creds = dockerCredentials({ DOCKER_CONFIG: dir });
    assert.deepEqual(creds('r.example:5000'), { username: 'u', password: 'p:colon' });
    assert.deepEqual(creds('registry-1.docker.io'), { username: 'hub', password: 'h' });
    assert.equal(creds('other'), undefined);
    assert.equal(dockerCredentials({ DOCKER_CONFIG: join(dir, 'none') })('r.example:5000'), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
