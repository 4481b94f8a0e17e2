// Build everything `npm install` needs: the native addon (node-gyp, offline
// against the Node headers installed with the system's Node) and the TypeScript.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

function nodeGyp() {
  // npm puts its bundled node-gyp on PATH for scripts; outside npm, find it beside npm.
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(bundled) ? [process.execPath, bundled] : ['node-gyp'];
}

// Node's headers ship with the distribution's Node in /usr/include/node: use them, never download.
const gypCommon = ['--directory', join(root, 'native'), ...(existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [])];
const [gyp, ...pre] = nodeGyp();
if (!process.argv.includes('--ts-only')) {
  // Configure only when there is no build tree or binding.gyp changed since; make then rebuilds
  // only what changed (a full rebuild: --clean).
  const makefile = join(root, 'native', 'build', 'Makefile');
  const stale = !existsSync(makefile) || statSync(join(root, 'native', 'binding.gyp')).mtimeMs > statSync(makefile).mtimeMs;
  if (process.argv.includes('--clean') || stale) run(gyp, [...pre, 'configure', ...gypCommon]);
  run(gyp, [...pre, 'build', ...gypCommon]);
  // The native tsnet-runc is the monitor under another name (it acts on argv[0]).
  const runc = join(root, 'native', 'build', 'Release', 'tsnet-runc');
  rmSync(runc, { force: true });
  symlinkSync('tsnet-monitor', runc);
}
// A clean output: compiled files of deleted or renamed sources must not linger (a stale test would run).
rmSync(join(root, 'dist'), { recursive: true, force: true });
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')]);
// The Node the native tsnet-runc runs its server (and its fallback) with.
writeFileSync(join(root, 'dist', 'node-path'), `${process.execPath}\n`);

// One-file bundle of the CLI: loading ~50 ESM modules costs ~50 ms per command; one
// file costs a fraction. netlink stays external (it finds its prebuilt binding
// relative to its own files). The bundle sits beside main.js so relative paths hold.
// The CNI plugins are bundled the same way: an orchestrator pays their start-up per container.
const esbuild = await import('esbuild');
const bundle = (entry, out) =>
  esbuild.build({
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['netlink'],
    banner: { js: "import { createRequire as __tsnetRequire } from 'node:module'; const require = __tsnetRequire(import.meta.url);" },
    logLevel: 'warning',
  });
await bundle(join(root, 'dist', 'src', 'cli', 'main.js'), join(root, 'dist', 'src', 'cli', 'main.bundle.mjs'));
// tsnet-runc: the OCI runtime's command line alone (an engine pays its start-up per container).
await bundle(join(root, 'dist', 'src', 'cli', 'oci-main.js'), join(root, 'dist', 'src', 'cli', 'oci-main.bundle.mjs'));
const pluginDir = join(root, 'dist', 'cni-plugins');
for (const f of existsSync(pluginDir) ? readdirSync(pluginDir) : []) {
  if (f.startsWith('tsnet-') && f.endsWith('.js')) await bundle(join(pluginDir, f), join(pluginDir, f.replace(/\.js$/, '.bundle.mjs')));
}
