// The store under real concurrent processes: increments are never lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';
import { silentLogger } from '../../src/log.js';
import { FakeKernel } from '../../src/system/fake/index.js';
import { SyscallError } from '../../src/errors.js';

const storeModule = fileURLToPath(new URL('../../src/store/store.js', import.meta.url));
const logModule = fileURLToPath(new URL('../../src/log.js', import.meta.url));

test('concurrent processes serialise on the store lock', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-store-'));
  try {
    const script = `
      const { Store } = await import(${JSON.stringify(storeModule)});
      const { silentLogger } = await import(${JSON.stringify(logModule)});
      const st = new Store(process.argv[1], () => ({ n: 0 }), silentLogger());
      for (let i = 0; i < 25; i++) {
        await st.transact(async (tx) => {
          const n = tx.state.n;
          await new Promise((r) => setImmediate(r));
          tx.write({ n: n + 1 });
        });
      }`;
    const procs = Array.from({ length: 6 }, () => new Promise<number>((resolve) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: 'inherit' });
      c.on('close', (code) => resolve(code ?? -1));
    }));
    assert.deepEqual(await Promise.all(procs), [0, 0, 0, 0, 0, 0]);
    const st = new Store(dir, () => ({ n: 0 }), silentLogger());
    assert.equal(st.read().n, 150);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing state file reads as the initial state', () => {
  const st = new Store(join(tmpdir(), 'tsnet-none-' + process.pid), () => ({ fresh: true }), silentLogger());
  assert.deepEqual(st.read(), { fresh: true });
});

test('an invalid state file is reported with its path and the backup; a write keeps the previous state as .bak; dead writers\' temp files go', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-store-'));
  try {
    const validate = (raw: unknown) => {
      if (typeof (raw as { n?: unknown })?.n !== 'number') throw new Error('n is not a number');
      return raw as { n: number };
    };
    const st = new Store(dir, () => ({ n: 0 }), silentLogger(), { validate });
    await st.transact(async (tx) => tx.write({ n: 1 }));
    await st.transact(async (tx) => tx.write({ n: 2 }));
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'state.json.bak'), 'utf8')), { n: 1 });
    writeFileSync(join(dir, 'state.json.4242.tmp'), '{"n":');
    for (const bad of ['{}', 'null', '{"n":"x"}', '[1]', '{"n":']) {
      writeFileSync(join(dir, 'state.json'), bad);
      assert.throws(() => st.read(), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'STATE_INVALID');
        assert.match(e.message, new RegExp(`state file ${join(dir, 'state.json')} is invalid`));
        assert.match(e.message, /state\.json\.bak/);
        return true;
      }, bad);
      await assert.rejects(st.transact(async (tx) => tx.write({ n: 9 })), /is invalid/, 'a transaction never writes over an invalid state');
    }
    writeFileSync(join(dir, 'state.json'), '{"n":5}');
    await st.transact(async (tx) => tx.write({ n: 6 }));
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'temp files of dead writers are removed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mutual exclusion holds when files in the store directory are deleted under a holder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-store-'));
  try {
    const st = new Store(dir, () => ({ n: 0 }), silentLogger());
    let inside = 0;
    let most = 0;
    const one = () =>
      st.transact(async (tx) => {
        most = Math.max(most, ++inside);
        rmSync(join(dir, 'lock'), { force: true }); // what an earlier version locked
        await new Promise((r) => setTimeout(r, 5));
        tx.write({ n: tx.state.n + 1 });
        inside--;
      });
    await Promise.all(Array.from({ length: 20 }, one));
    assert.equal(most, 1);
    assert.equal(st.read().n, 20);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over the fake kernel: a full disk is a clear error that changes nothing and leaves no temp file; the state file is 0600', async () => {
  const k = new FakeKernel();
  const dir = '/var/lib/tsnet-fake';
  const st = new Store(dir, () => ({ n: 0 }), silentLogger(), { kernel: k });
  await st.transact(async (tx) => tx.write({ n: 1 }));
  assert.equal(k.files.modeOf(join(dir, 'state.json')), 0o600);
  k.files.failWrites = 'ENOSPC';
  await assert.rejects(
    st.transact(async (tx) => tx.write({ n: 2 })),
    (e: unknown) => e instanceof SyscallError && e.errno === 'ENOSPC' && /cannot write the state file/.test(e.message),
  );
  k.files.failWrites = undefined;
  assert.equal(st.read().n, 1, 'the state is what it was');
  assert.deepEqual(k.files.list(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
  await st.transact(async (tx) => tx.write({ n: 3 }));
  assert.equal(JSON.parse(k.files.read(join(dir, 'state.json.bak'))!).n, 1, 'the backup is the state the write replaced');
});
