// State validation: valid JSON of the wrong shape is named precisely, never a raw JavaScript error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyState, parseState } from '../../src/controller/model.js';

test('parseState accepts a state and names the first problem of a broken one', () => {
  assert.deepEqual(parseState(emptyState()), emptyState());
  const cases: Array<[unknown, RegExp]> = [
    [null, /the document is not an object/],
    [{}, /version is undefined/],
    [{ version: 1 }, /networks is not an object/],
    [{ version: 1, networks: [], endpoints: {}, sandboxes: {} }, /networks is not an object/],
    [{ version: 1, networks: { a: { id: 'a' } }, endpoints: {}, sandboxes: {} }, /networks\.a\.name is not a string/],
    [{ version: 1, networks: {}, endpoints: {}, sandboxes: { s: { id: 's', name: 'x', kind: 'weird', key: '/k', phase: 'ready', created: '' } } }, /sandboxes\.s\.kind is not one of/],
    [{ version: 1, networks: {}, endpoints: {}, sandboxes: { s: { id: 't', name: 'x', kind: 'named', key: '/k', phase: 'ready', created: '' } } }, /does not match the key/],
    [{ version: 1, networks: {}, sandboxes: {}, endpoints: { e: { id: 'e', networkId: 'n', sandboxId: 's', phase: 'ready', ifname: 'eth0' } } }, /endpoints\.e\.networkId names no network/],
    [{ version: 2, networks: {}, endpoints: {}, sandboxes: {} }, /version is 2/],
  ];
  for (const [raw, re] of cases) assert.throws(() => parseState(raw), re, JSON.stringify(raw));
});
