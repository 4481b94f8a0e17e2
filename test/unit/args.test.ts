import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyValues, parseArgs, type FlagSpec } from '../../src/cli/args.js';
import { TsnetError, asTsnetError } from '../../src/errors.js';

const specs: FlagSpec[] = [
  { name: 'subnet', type: 'list', help: '' },
  { name: 'driver', short: 'd', type: 'string', help: '' },
  { name: 'internal', type: 'bool', help: '' },
  { name: 'opt', short: 'o', type: 'list', help: '' },
];

test('flags: long, =, short, repeated lists, booleans, positionals, --', () => {
  const p = parseArgs(['--subnet', '10.0.0.0/24', '--subnet=fd00::/64', '-d', 'bridge', '-ofoo=1', '--internal', 'net', '--', '-x'], specs);
  assert.deepEqual(p.flags, { subnet: ['10.0.0.0/24', 'fd00::/64'], driver: 'bridge', opt: ['foo=1'], internal: true });
  assert.deepEqual(p.positionals, ['net']);
  assert.deepEqual(p.rest, ['-x']);
});

test('flag errors are INVALID_CONFIG', () => {
  for (const argv of [['--nope'], ['-z'], ['--driver'], ['-d', 'a', '-d', 'b'], ['--internal=maybe']]) {
    assert.throws(() => parseArgs(argv, specs), (e: TsnetError) => e.code === 'INVALID_CONFIG', argv.join(' '));
  }
  assert.throws(() => keyValues(['novalue'], 'option'), /KEY=VALUE/);
  assert.throws(() => keyValues(['a=1', 'a=2'], 'option'), /twice/);
  assert.deepEqual(keyValues(['a=b=c'], 'option'), { a: 'b=c' });
});

test('anything thrown becomes a TsnetError: errno errors are SYSCALL, the rest INTERNAL (meanings: errors.test.ts)', () => {
  const sys = asTsnetError(Object.assign(new Error('x'), { code: 'EEXIST', syscall: 'mkdir' }));
  assert.equal(sys.code, 'SYSCALL');
  assert.equal(asTsnetError(new Error('boom')).code, 'INTERNAL');
});

test('combined short flags (-qf name=x), bare labels', () => {
  const ls: FlagSpec[] = [
    { name: 'quiet', short: 'q', type: 'bool', help: '' },
    { name: 'filter', short: 'f', type: 'list', help: '' },
    { name: 'no-trunc', type: 'bool', help: '' },
  ];
  assert.deepEqual(parseArgs(['-qf', 'name=x'], ls).flags, { quiet: true, filter: ['name=x'] });
  assert.deepEqual(parseArgs(['-qfname=y'], ls).flags, { quiet: true, filter: ['name=y'] });
  assert.deepEqual(parseArgs(['-q'], ls).flags, { quiet: true });
  assert.throws(() => parseArgs(['-qz'], ls), /unknown shorthand flag: 'z'/);
  assert.deepEqual(keyValues(['env', 'tier=web'], 'label', { bare: true }), { env: '', tier: 'web' });
  assert.throws(() => keyValues(['env'], 'option'), /KEY=VALUE/);
  assert.throws(() => keyValues(['=x'], 'label', { bare: true }), /KEY=VALUE/);
});
