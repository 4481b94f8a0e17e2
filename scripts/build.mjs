// Build everything `npm install` needs: the native addon (node-gyp, offline
// against the Node headers installed with the system's Node) and the TypeScript.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

function nodeGyp() {
  // npm puts its bundled node-gyp on PATH for scripts; outside npm, find it beside npm.
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(bundled) ? [process.execPath, bundled] : ['node-gyp'];
}

const gypArgs = ['rebuild', '--directory', join(root, 'native')];
// Node's headers ship with the distribution's Node in /usr/include/node: use them, never download.
if (existsSync('/usr/include/node/node_api.h')) gypArgs.push('--nodedir=/usr');
const [gyp, ...pre] = nodeGyp();
if (!process.argv.includes('--ts-only')) run(gyp, [...pre, ...gypArgs]);
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
