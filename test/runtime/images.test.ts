// Images from other tools: an OCI layout built by umoci, its docker-archive,
// oci-archive and zstd copies made by skopeo, `tsnet save` read back by skopeo,
// and pulls from Debian's docker-registry on loopback inside the test's own host
// namespace (plain HTTP, and HTTPS with a CA of the test's and a login).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxTar, pollUntil, runtimeSkip, withRuntime, type RuntimeHost } from './harness.js';

const skip = runtimeSkip('skopeo', 'umoci', 'docker-registry', 'openssl', 'htpasswd');

function must(argv: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: opts.cwd });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** An OCI layout at DIR/L with image "1": busybox, a config set by umoci. */
function umociImage(dir: string): string {
  const layout = join(dir, 'L');
  const bundle = join(dir, 'bundle');
  must(['umoci', 'init', '--layout', layout]);
  must(['umoci', 'new', '--image', `${layout}:1`]);
  must(['umoci', 'unpack', '--image', `${layout}:1`, bundle]);
  must(['tar', '-C', join(bundle, 'rootfs'), '-xf', busyboxTar()]);
  // A whiteout in a second layer: /etc/motd is in layer 1 and gone in layer 2.
  writeFileSync(join(bundle, 'rootfs', 'etc', 'motd'), 'from layer one\n');
  must(['umoci', 'repack', '--refresh-bundle', '--image', `${layout}:1`, bundle]);
  spawnSync('rm', ['-f', join(bundle, 'rootfs', 'etc', 'motd')]);
  writeFileSync(join(bundle, 'rootfs', 'etc', 'layer2'), 'two\n');
  must(['umoci', 'repack', '--image', `${layout}:1`, bundle]);
  must(['umoci', 'config', '--image', `${layout}:1`, '--config.env', 'FROM_UMOCI=yes', '--config.workingdir', '/tmp', '--config.exposedports', '8080/tcp',
    '--config.cmd', 'sh', '--config.cmd', '-c', '--config.cmd', 'echo env=$FROM_UMOCI pwd=$(pwd) motd=$(cat /etc/motd 2>&1 | wc -l) l2=$(cat /etc/layer2)']);
  must(['umoci', 'gc', '--layout', layout]);
  return layout;
}

const EXPECTED = 'env=yes pwd=/tmp motd=1 l2=two'; // motd: one line, cat's "No such file"

function assertNoTemps(r: RuntimeHost): void {
  const tmp = join(r.h.root, 'images', 'tmp');
  assert.deepEqual(existsSync(tmp) ? readdirSync(tmp) : [], [], 'no temp files left in the image store');
}

test('images: an OCI layout by umoci, docker-archive, oci-archive and zstd copies by skopeo load and run; save is read by skopeo and loads back from stdin', { skip }, () =>
  withRuntime((r) => {
    const dir = join(r.h.dir, 'img');
    mkdirSync(dir);
    const layout = umociImage(dir);
    must(['skopeo', 'copy', '-q', `oci:${layout}:1`, `docker-archive:${dir}/d.tar:img/dock:1`]);
    must(['skopeo', 'copy', '-q', `oci:${layout}:1`, `oci-archive:${dir}/o.tar:img/ociarch:1`]);
    must(['skopeo', 'copy', '-q', '--dest-compress', '--dest-compress-format', 'zstd', `oci:${layout}:1`, `oci:${dir}/Z:z`]);

    assert.equal(r.ok(['load', '-i', `${dir}/d.tar`]), 'Loaded image: img/dock:1');
    assert.equal(r.ok(['run', '--rm', 'img/dock:1']), EXPECTED, 'config, whiteout and both layers from the docker archive');
    const im = JSON.parse(r.ok(['image', 'inspect', 'img/dock:1']))[0];
    assert.ok(im.Config.Env.includes('FROM_UMOCI=yes'));
    assert.deepEqual(Object.keys(im.Config.ExposedPorts), ['8080/tcp']);
    assert.equal(im.RootFS.Layers.length, 2);

    // The OCI layout directory itself: same config, same layers, so the same image ID.
    const fromLayout = r.ok(['load', '-i', layout]);
    assert.match(fromLayout, /^Loaded image ID: sha256:[a-f0-9]{64}$/);
    assert.equal(fromLayout.split(' ').pop(), im.Id);
    // skopeo's oci-archive names the image in org.opencontainers.image.ref.name.
    assert.equal(r.ok(['load', '-i', `${dir}/o.tar`]), 'Loaded image: img/ociarch:1');

    // zstd: another blob, the same diff IDs.
    const zindex = JSON.parse(readFileSync(`${dir}/Z/index.json`, 'utf8'));
    const zman = JSON.parse(readFileSync(`${dir}/Z/blobs/sha256/${zindex.manifests[0].digest.slice(7)}`, 'utf8'));
    assert.ok(zman.layers.every((l: { mediaType: string }) => l.mediaType.endsWith('+zstd')), 'skopeo wrote zstd layers');
    r.ok(['rmi', '-f', ...new Set(r.ok(['images', '-q']).split('\n'))]);
    assert.equal(r.ok(['images', '-q']), '', 'all gone');
    assert.equal(readdirSync(join(r.h.root, 'images', 'layers')).length, 0, 'layers went with the last image');
    const z = r.ok(['load', '-i', `${dir}/Z`]).split(' ').pop()!;
    r.ok(['tag', z, 'img/zstd:1']);
    assert.equal(r.ok(['run', '--rm', 'img/zstd:1']), EXPECTED);

    // save: an archive skopeo reads both ways, and that loads back through stdin.
    r.ok(['save', '-o', `${dir}/s.tar`, 'img/zstd']);
    assert.match(must(['skopeo', 'inspect', `docker-archive:${dir}/s.tar`]), /"Layers"/);
    assert.match(must(['skopeo', 'inspect', `oci-archive:${dir}/s.tar`]), /"Layers"/);
    r.ok(['rmi', 'img/zstd:1']);
    const loaded = r.h.tsnet(['load'], {}, { input: readFileSync(`${dir}/s.tar`) });
    assert.equal(loaded.code, 0, loaded.stderr);
    assert.equal(loaded.stdout.trim(), 'Loaded image: img/zstd:1');
    assert.equal(r.ok(['run', '--rm', 'img/zstd:1']), EXPECTED);
    assertNoTemps(r);
  }, { image: false }));

test('images: a corrupt blob, a truncated archive and a bad reference are refused and leave nothing', { skip }, () =>
  withRuntime((r) => {
    const dir = join(r.h.dir, 'img');
    mkdirSync(dir);
    const layout = umociImage(dir);
    // Flip a byte in the biggest blob (a layer) of a copy of the layout.
    must(['cp', '-a', layout, `${dir}/bad`]);
    const blobs = join(dir, 'bad', 'blobs', 'sha256');
    const big = readdirSync(blobs).sort((a, b) => readFileSync(join(blobs, b)).length - readFileSync(join(blobs, a)).length)[0]!;
    const buf = readFileSync(join(blobs, big));
    buf[buf.length >> 1] ^= 0xff;
    writeFileSync(join(blobs, big), buf);
    let res = r.tsnet(['load', '-i', `${dir}/bad`]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /digest mismatch|corrupt/);
    // A docker archive cut in half.
    must(['skopeo', 'copy', '-q', `oci:${layout}:1`, `docker-archive:${dir}/d.tar:img/dock:1`]);
    const whole = readFileSync(`${dir}/d.tar`);
    writeFileSync(`${dir}/half.tar`, whole.subarray(0, whole.length >> 1));
    res = r.tsnet(['load', '-i', `${dir}/half.tar`]);
    assert.notEqual(res.code, 0);
    assert.equal(res.stderr.trim().split('\n').length, 1, `one line: ${res.stderr}`);
    res = r.tsnet(['load', '-i', `${dir}/nothere.tar`]);
    assert.match(res.stderr, /no such file/);
    res = r.tsnet(['pull', 'Bad//Ref']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /invalid reference format/);
    res = r.tsnet(['run', '--pull', 'never', 'img/none:1', 'true']);
    assert.equal(res.code, 125);
    assert.match(res.stderr, /No such image: img\/none:1/);
    res = r.tsnet(['run', '--pull', 'sometimes', 'img/none:1', 'true']);
    assert.match(res.stderr, /invalid --pull "sometimes"/);
    assert.equal(r.ok(['images', '-q']), '');
    const layers = join(r.h.root, 'images', 'layers');
    assert.deepEqual(existsSync(layers) ? readdirSync(layers) : [], []);
    assertNoTemps(r);
  }, { image: false }));

/** docker-registry inside the test's host namespace; stopped by stop(). */
async function registry(r: RuntimeHost, name: string, port: number, extra = ''): Promise<{ data: string; stop: () => void }> {
  const data = join(r.h.dir, `${name}-data`);
  const cfg = join(r.h.dir, `${name}.yml`);
  writeFileSync(cfg, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${data}\nhttp:\n  addr: 127.0.0.1:${port}\n${extra}`);
  const p: ChildProcess = spawn('nsenter', [`--net=${r.h.nsPath}`, '--', 'docker-registry', 'serve', cfg], { stdio: 'ignore' });
  const up = await pollUntil(() => r.sh('curl', '-sk', '-o', '/dev/null', `http://127.0.0.1:${port}/v2/`).code === 0);
  if (!up) {
    p.kill('SIGKILL');
    throw new Error(`docker-registry ${name} did not start`);
  }
  return { data, stop: () => p.kill('SIGKILL') };
}

test('pull: from docker-registry on loopback (filled by skopeo): layers, digests, up to date, run pulls a missing image, corrupt blobs and unknown tags', { skip }, async () =>
  withRuntime(async (r) => {
    const dir = join(r.h.dir, 'img');
    mkdirSync(dir);
    const layout = umociImage(dir);
    const reg = await registry(r, 'plain', 5000);
    try {
      const push = (dest: string, ...flags: string[]) => {
        const res = r.sh('skopeo', 'copy', '-q', '--dest-tls-verify=false', ...flags, `oci:${layout}:1`, `docker://127.0.0.1:5000/${dest}`);
        assert.equal(res.code, 0, res.stderr);
      };
      push('t/bb:1');
      push('t/bbz:1', '--dest-compress', '--dest-compress-format', 'zstd');
      let out = r.ok(['pull', '127.0.0.1:5000/t/bb:1']).split('\n');
      assert.equal(out[0], '1: Pulling from t/bb');
      assert.equal(out.filter((l) => l.endsWith(': Pull complete')).length, 2, out.join('\n'));
      assert.match(out.at(-3)!, /^Digest: sha256:[a-f0-9]{64}$/);
      assert.equal(out.at(-2), 'Status: Downloaded newer image for 127.0.0.1:5000/t/bb:1');
      assert.equal(out.at(-1), '127.0.0.1:5000/t/bb:1');
      const digest = out.at(-3)!.slice('Digest: '.length);
      const im = JSON.parse(r.ok(['image', 'inspect', '127.0.0.1:5000/t/bb:1']))[0];
      assert.deepEqual(im.RepoDigests, [`127.0.0.1:5000/t/bb@${digest}`]);
      assert.equal(r.ok(['run', '--rm', '127.0.0.1:5000/t/bb:1']), EXPECTED);

      out = r.ok(['pull', '127.0.0.1:5000/t/bb:1']).split('\n');
      assert.ok(out.includes('Status: Image is up to date for 127.0.0.1:5000/t/bb:1'), out.join('\n'));
      assert.equal(out.filter((l) => l.endsWith(': Already exists')).length, 2);
      // By digest: the same image, filed as name@digest.
      assert.equal(r.ok(['pull', '-q', `127.0.0.1:5000/t/bb@${digest}`]), `127.0.0.1:5000/t/bb@${digest}`);
      // zstd layers of the same content: the layers are there already (by diff ID).
      out = r.ok(['pull', '127.0.0.1:5000/t/bbz:1']).split('\n');
      assert.equal(out.filter((l) => l.endsWith(': Already exists')).length, 2, out.join('\n'));

      // run of a missing image pulls it first (Docker's --pull missing).
      push('t/other:2');
      const run = r.tsnet(['run', '--rm', '127.0.0.1:5000/t/other:2']);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /Unable to find image '127\.0\.0\.1:5000\/t\/other:2' locally/);
      assert.equal(run.stdout.trim(), EXPECTED);

      // Unknown tag and repository: NOT_FOUND (exit 3), one line, nothing stored.
      let res = r.tsnet(['pull', '127.0.0.1:5000/t/bb:nope']);
      assert.equal(res.code, 3, res.stderr);
      assert.match(res.stderr, /manifest unknown/);
      res = r.tsnet(['pull', '127.0.0.1:5000/t/nothing:1']);
      assert.equal(res.code, 3, res.stderr);
      // Nothing listens on 5999: a clear error, quickly.
      res = r.tsnet(['pull', '127.0.0.1:5999/t/bb:1']);
      assert.match(res.stderr, /cannot reach registry 127\.0\.0\.1:5999: .*ECONNREFUSED/);

      // A corrupt layer blob in the registry's storage: refused by digest, nothing recorded.
      r.ok(['rmi', '-f', ...new Set(r.ok(['images', '-q']).split('\n'))]);
      assert.equal(r.ok(['images', '-q']), '');
      const layerDigests: string[] = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')).manifests[0].digest.slice(7)), 'utf8')).layers.map((l: { digest: string }) => l.digest);
      const data = join(reg.data, 'docker', 'registry', 'v2', 'blobs', 'sha256', layerDigests[1]!.slice(7, 9), layerDigests[1]!.slice(7), 'data');
      const buf = readFileSync(data);
      buf[buf.length >> 1] ^= 0xff;
      writeFileSync(data, buf);
      res = r.tsnet(['pull', '127.0.0.1:5000/t/bb:1']);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /digest mismatch|corrupt/);
      assert.equal(r.ok(['images', '-q']), '');
      assert.deepEqual(readdirSync(join(r.h.root, 'images', 'layers')), [], 'the good layer is not kept without its image');
      assertNoTemps(r);
    } finally {
      reg.stop();
    }
  }, { image: false }));

test('pull: HTTPS with the registry CA in TSNET_CERTS_D, and a login from DOCKER_CONFIG; refused without either', { skip }, async () =>
  withRuntime(async (r) => {
    const dir = join(r.h.dir, 'img');
    mkdirSync(dir);
    const layout = umociImage(dir);
    // A CA and a server certificate for 127.0.0.1, and an htpasswd file.
    const pki = join(r.h.dir, 'pki');
    mkdirSync(pki);
    must(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=tsnet test CA', '-keyout', 'ca.key', '-out', 'ca.crt'], { cwd: pki });
    must(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'srv.key', '-out', 'srv.csr'], { cwd: pki });
    writeFileSync(join(pki, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    must(['openssl', 'x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'srv.crt'], { cwd: pki });
    writeFileSync(join(pki, 'htpasswd'), must(['htpasswd', '-Bbn', 'tester', 's3cret']));
    const reg = await registry(r, 'tls', 5443, `  tls:\n    certificate: ${pki}/srv.crt\n    key: ${pki}/srv.key\nauth:\n  htpasswd:\n    realm: test\n    path: ${pki}/htpasswd\n`);
    try {
      const certs = join(r.h.dir, 'certs.d');
      mkdirSync(join(certs, '127.0.0.1:5443'), { recursive: true });
      writeFileSync(join(certs, '127.0.0.1:5443', 'ca.crt'), readFileSync(join(pki, 'ca.crt')));
      const push = r.sh('skopeo', 'copy', '-q', '--dest-cert-dir', join(certs, '127.0.0.1:5443'), '--dest-creds', 'tester:s3cret', `oci:${layout}:1`, 'docker://127.0.0.1:5443/sec/bb:1');
      assert.equal(push.code, 0, push.stderr);
      const dockerConfig = join(r.h.dir, 'docker');
      mkdirSync(dockerConfig);
      writeFileSync(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { '127.0.0.1:5443': { auth: Buffer.from('tester:s3cret').toString('base64') } } }));

      // The CA unknown: HTTPS fails on the certificate (and loopback's HTTP fallback cannot help).
      let res = r.h.tsnet(['pull', '127.0.0.1:5443/sec/bb:1'], { TSNET_CERTS_D: join(r.h.dir, 'empty'), DOCKER_CONFIG: dockerConfig });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /cannot reach registry 127\.0\.0\.1:5443: its certificate is not trusted .*127\.0\.0\.1:5443\/ca\.crt/);
      // The CA known, no credentials: the registry's 401 becomes a clear error.
      res = r.h.tsnet(['pull', '127.0.0.1:5443/sec/bb:1'], { TSNET_CERTS_D: certs, DOCKER_CONFIG: join(r.h.dir, 'nodocker') });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /wants a login, and there are no credentials/);
      // Both: pulled, and it runs.
      res = r.h.tsnet(['pull', '127.0.0.1:5443/sec/bb:1'], { TSNET_CERTS_D: certs, DOCKER_CONFIG: dockerConfig });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(r.ok(['run', '--rm', '127.0.0.1:5443/sec/bb:1']), EXPECTED);
      assertNoTemps(r);
    } finally {
      reg.stop();
    }
  }, { image: false }));
