// `npm test`: compiles web/test/*.test.ts (and the src modules they import)
// with tsconfig.test.json into a temporary folder, then runs them with
// Node's test runner. Extra arguments go to `node --test`, e.g.
//   npm test -- --test-reporter=tap
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const out = mkdtempSync(join(tmpdir(), 'conclave-web-test-'));
let status = 1;
try {
  const build = spawnSync(process.execPath, [tsc, '-p', join(web, 'tsconfig.test.json'), '--outDir', out], { stdio: 'inherit' });
  if (build.status !== 0) {
    console.error('unit-tests: the tests did not compile');
  } else {
    // web/package.json says "type": "module"; the compiled files are CommonJS.
    writeFileSync(join(out, 'package.json'), '{"type": "commonjs"}\n');
    const files = readdirSync(join(out, 'test'))
      .filter((f) => f.endsWith('.test.js'))
      .sort()
      .map((f) => join(out, 'test', f));
    if (files.length === 0) {
      console.error('unit-tests: no test files compiled');
    } else {
      const run = spawnSync(process.execPath, ['--test', ...process.argv.slice(2), ...files], { stdio: 'inherit' });
      status = run.status ?? 1;
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exit(status);
