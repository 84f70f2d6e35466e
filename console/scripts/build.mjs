// Builds funnelhouse/console_dist/: index.html, app.js (one bundle: Preact, the tree-shaken ECharts parts, the views) and app.css.
// Type-checks first, so a type error fails the build.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Built into the Python package, so `pip install .` ships it.
const dist = join(root, '..', 'funnelhouse', 'console_dist');

execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(root, 'src/main.tsx')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  format: 'iife',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(join(root, 'src/index.html'), join(dist, 'index.html'));
copyFileSync(join(root, 'src/app.css'), join(dist, 'app.css'));

for (const f of ['app.js', 'app.css', 'index.html']) {
  const buf = readFileSync(join(dist, f));
  console.log(`${f.padEnd(11)} ${String(buf.length).padStart(8)} B   gzip ${String(gzipSync(buf, { level: 9 }).length).padStart(7)} B`);
}
