// The one error table means what each front end's codes mean: the CNI spec's
// codes (below 100) only where the spec's meaning is exactly ours, distinct
// plugin codes otherwise; one CLI exit code per error kind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_TABLE, NotFoundError, SyscallError, TsnetError, asTsnetError, type ErrorCode } from '../../src/errors.js';
import { CNI_ERR, CniError } from '../../src/cni/spec.js';

/** The CNI spec's reserved codes and what they tell a runtime (SPEC.md, "Error codes"). */
const SPEC_MEANING: Record<number, string> = {
  1: 'incompatible CNI version',
  2: 'unsupported field in network configuration',
  3: 'container unknown or does not exist (the runtime need not clean up)',
  4: 'invalid necessary environment variables',
  5: 'I/O failure',
  6: 'failed to decode content',
  7: 'invalid network config',
  11: 'try again later',
  50: 'plugin not available',
  51: 'plugin not available (cannot reach a dependency)',
};

/** The only tsnet errors whose meaning is one of the spec's. */
const MEANS: Partial<Record<ErrorCode, number>> = {
  INVALID_CONFIG: 7, // a configuration value tsnet refuses
  UNSUPPORTED: 2, // something tsnet does not support, named in the message
  EXHAUSTED: 11, // no address or port left now; one frees up when another container goes
  UNAVAILABLE: 50, // a tool or service the plugin needs is missing
};

test('CNI codes: spec codes only where the spec means exactly that; others are distinct plugin codes', () => {
  for (const [code, m] of Object.entries(ERROR_TABLE) as Array<[ErrorCode, (typeof ERROR_TABLE)[ErrorCode]]>) {
    if (MEANS[code] !== undefined) {
      assert.equal(m.cni, MEANS[code], `${code} means "${SPEC_MEANING[MEANS[code]!]}"`);
    } else {
      assert.ok(m.cni >= 100, `${code} has no spec meaning, so it must not use spec code ${m.cni} ("${SPEC_MEANING[m.cni] ?? '?'}")`);
    }
  }
  const plugin = Object.values(ERROR_TABLE).map((m) => m.cni).filter((c) => c >= 100);
  assert.equal(new Set(plugin).size, plugin.length, 'plugin codes are distinct');
  assert.equal(ERROR_TABLE.CHECK_FAILED.cni, CNI_ERR.CHECK_FAILED, 'CHECK failures keep the code CNI_ERR names');
  assert.ok(Object.values(CNI_ERR).filter((c) => c < 100).every((c) => SPEC_MEANING[c]), 'CNI_ERR names only spec codes below 100');
});

test('CLI exit codes: one per error kind, none taken by success, usage or exec (125-127, 128+N)', () => {
  const exits = Object.values(ERROR_TABLE).map((m) => m.exit);
  assert.equal(new Set(exits).size, exits.length);
  assert.ok(exits.every((e) => e > 0 && e < 125));
});

test('one hierarchy: CNI errors are tsnet errors that keep their spec code; aggregates report a shared code or INTERNAL', () => {
  const e = new CniError(CNI_ERR.INVALID_CONFIG, 'bad');
  assert.ok(e instanceof TsnetError);
  assert.equal(e.code, 'INVALID_CONFIG');
  assert.equal(e.cniCode, 7);
  assert.equal(new CniError(CNI_ERR.UNKNOWN_CONTAINER, 'gone').code, 'NOT_FOUND');
  assert.equal(new CniError(CNI_ERR.CHECK_FAILED, 'drifted').mapping.exit, 15);
  assert.equal(new CniError(CNI_ERR.NOT_AVAILABLE, 'no nft').mapping.grpc, 14);
  assert.equal(asTsnetError(new AggregateError([new NotFoundError('a'), new NotFoundError('b')], 'teardown')).code, 'NOT_FOUND');
  const mixed = asTsnetError(new AggregateError([new NotFoundError('a'), new SyscallError('netlink', 'EBUSY', 'b')], 'teardown'));
  assert.equal(mixed.code, 'INTERNAL', 'no one failure stands for the others');
  assert.match(mixed.message, /teardown; a; b/);
});
