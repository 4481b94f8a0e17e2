// --format templates and list output, as Docker's CLI renders them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileTemplate } from '../../src/cli/template.js';
import { renderInspect, renderList } from '../../src/cli/output.js';
import { networkFilter, parseFilterArgs, sandboxFilter } from '../../src/api/filters.js';
import type { NetworkRecord, State } from '../../src/controller/model.js';

const net = {
  Name: 'web', Id: 'abc', Internal: false, Options: { 'com.docker.network.bridge.name': 'br0' },
  IPAM: { Config: [{ Subnet: '10.1.0.0/24', Gateway: '10.1.0.1' }, { Subnet: 'fd00::/64' }] }, Labels: {}, Containers: { x: { Name: 'a' }, y: { Name: 'b' } },
};

test('templates: fields, index, range, if/else, json, pipes, functions, Go printing', () => {
  const r = (t: string, v: unknown = net) => compileTemplate(t).render(v);
  assert.equal(r('{{.Name}}'), 'web');
  assert.equal(r('{{index .Options "com.docker.network.bridge.name"}}'), 'br0');
  assert.equal(r('{{range .IPAM.Config}}{{.Subnet}} {{end}}'), '10.1.0.0/24 fd00::/64 ');
  assert.equal(r('{{range .Containers}}{{.Name}},{{end}}'), 'a,b,');
  assert.equal(r('{{if .Internal}}internal{{else}}external{{end}}'), 'external');
  assert.equal(r('{{json .IPAM.Config}}'), JSON.stringify(net.IPAM.Config));
  assert.equal(r('{{.Name | upper}}'), 'WEB');
  assert.equal(r('{{len .IPAM.Config}} {{join (split "a,b" ",") "-"}}'), '2 a-b');
  assert.equal(r('{{.Options}}'), 'map[com.docker.network.bridge.name:br0]');
  assert.equal(r('{{.Nope}}'), '<no value>');
  assert.equal(r('{{printf "%s=%d" .Name 3}}'), 'web=3');
  assert.equal(r('{{range .Labels}}x{{else}}none{{end}}'), 'none');
  assert.equal(r('{{with .IPAM}}{{len .Config}}{{end}}'), '2');
  assert.equal(r('a {{- " b " -}} c'), 'a b c');
  for (const bad of ['{{.Name', '{{range .X}}', '{{end}}', '{{nosuch .X}}', '{{.A .B}}']) assert.throws(() => r(bad), /invalid --format template/, bad);
});

test('ls output: table, json, template, table template with headers; -q', () => {
  const spec = { columns: [['ID', 'NETWORK ID'], ['Name', 'NAME']] as Array<[string, string]>, headers: { ID: 'NETWORK ID', Name: 'NAME' }, idField: 'ID' };
  const rows = [{ ID: '111', Name: 'a' }, { ID: '222', Name: 'bb' }];
  assert.deepEqual(renderList(rows, spec, {}), ['NETWORK ID   NAME\n111          a\n222          bb']);
  assert.deepEqual(renderList([], spec, {}), ['NETWORK ID   NAME'], 'headers even with no rows');
  assert.deepEqual(renderList(rows, spec, { format: 'json' }), ['{"ID":"111","Name":"a"}', '{"ID":"222","Name":"bb"}']);
  assert.deepEqual(renderList(rows, spec, { format: '{{.Name}}' }), ['a', 'bb']);
  assert.deepEqual(renderList(rows, spec, { format: 'table {{.Name}}\\t{{.ID}}' }), ['NAME   NETWORK ID\na      111\nbb     222']);
  assert.deepEqual(renderList(rows, spec, { quiet: true, format: 'json' }), ['111', '222']);
  assert.deepEqual(renderInspect([{ Name: 'a' }], undefined), ['[\n    {\n        "Name": "a"\n    }\n]']);
  assert.deepEqual(renderInspect([{ Name: 'a' }, { Name: 'b' }], '{{.Name}}'), ['a', 'b']);
  assert.throws(() => renderInspect([{}], 'table'), /Go template or json/);
});

test('filters: keys checked, values of one key OR, keys AND; labels by key or key=value; dangling and type', () => {
  const net = (id: string, name: string, labels: Record<string, string>, predefined = false): NetworkRecord => ({
    id, name, driver: 'bridge', created: '', phase: 'ready', predefined, internal: false, enableIPv6: false, options: {}, labels, subnets: [],
  });
  const s: State = {
    version: 1,
    networks: { a1: net('a1', 'web', { env: 'prod' }), b2: net('b2', 'web2', {}), c3: net('c3', 'db', { env: 'dev' }), d4: net('d4', 'bridge', {}, true) },
    sandboxes: { s1: { id: 's1', name: 'x', kind: 'named', key: '/k', phase: 'ready', created: '' } },
    endpoints: { e1: { id: 'e1', networkId: 'a1', sandboxId: 's1', phase: 'ready', ifname: 'eth0' } },
  };
  const pick = (f: string[]) => Object.values(s.networks).filter(networkFilter(s, parseFilterArgs(f))).map((x) => x.name);
  assert.deepEqual(pick(['name=web']), ['web', 'web2']);
  assert.deepEqual(pick(['name=web', 'name=db']), ['web', 'web2', 'db']);
  assert.deepEqual(pick(['name=web', 'label=env']), ['web']);
  assert.deepEqual(pick(['label=env=dev']), ['db']);
  assert.deepEqual(pick(['dangling=true']), ['web2', 'db'], 'unused, not predefined');
  assert.deepEqual(pick(['type=builtin']), ['bridge']);
  assert.deepEqual(pick(['id=c']), ['db']);
  assert.deepEqual(Object.values(s.sandboxes).filter(sandboxFilter(s, parseFilterArgs(['network=web']))).map((x) => x.name), ['x']);
  assert.throws(() => pick(['colour=red']), /invalid filter 'colour'/);
  assert.throws(() => pick(['name']), /KEY=VALUE/);
  assert.throws(() => pick(['type=odd']), /custom or builtin/);
});
