// The store under real concurrent processes: increments are never lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';
import { silentLogger } from '../../src/log.js';

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
