// Builds dist/: ES modules (index.js, core.js), the <script> file (funnelhouse.min.js), the snippet, and .d.ts files.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const common = {
  bundle: true,
  target: 'es2019',
  define: { __FH_VERSION__: JSON.stringify(pkg.version) },
  legalComments: 'none',
  logLevel: 'warning',
};

await build({ ...common, entryPoints: [join(root, 'src/index.ts')], outfile: join(dist, 'index.js'), format: 'esm', sourcemap: true });
await build({ ...common, entryPoints: [join(root, 'src/core/index.ts')], outfile: join(dist, 'core.js'), format: 'esm', sourcemap: true });
await build({ ...common, entryPoints: [join(root, 'src/global.ts')], outfile: join(dist, 'funnelhouse.min.js'), format: 'iife', minify: true, sourcemap: true });
await build({ entryPoints: [join(root, 'src/snippet.js')], outfile: join(dist, 'snippet.min.js'), minify: true, target: 'es5', logLevel: 'warning' });

execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });

const sizes = {};
for (const f of ['funnelhouse.min.js', 'index.js', 'core.js', 'snippet.min.js']) {
  const buf = readFileSync(join(dist, f));
  sizes[f] = { bytes: buf.length, gzip: gzipSync(buf, { level: 9 }).length };
}
writeFileSync(join(dist, 'sizes.json'), JSON.stringify(sizes, null, 2) + '\n');
for (const [f, s] of Object.entries(sizes)) console.log(`${f.padEnd(20)} ${String(s.bytes).padStart(7)} B   gzip ${String(s.gzip).padStart(6)} B`);
