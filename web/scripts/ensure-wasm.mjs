// Builds the E2EE core's WebAssembly module into src/e2ee-wasm/ when it is
// missing or older than its sources (run before `tsc` and `vite build`).
//
// "Older" is decided by a hash of the inputs (crates/e2ee, crates/e2ee-wasm,
// Cargo.lock, scripts/build-wasm.sh) stored next to the output, so a git
// checkout that only touches mtimes does not force a rebuild.
// CONCLAVE_SKIP_WASM_BUILD=1 uses whatever is in src/e2ee-wasm/.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');
const out = join(web, 'src', 'e2ee-wasm');
const stamp = join(out, '.inputs-sha256');
const outputs = ['conclave_e2ee_wasm.js', 'conclave_e2ee_wasm.d.ts', 'conclave_e2ee_wasm_bg.wasm'];
const inputs = [
  'crates/e2ee/src',
  'crates/e2ee/Cargo.toml',
  'crates/e2ee-wasm/src',
  'crates/e2ee-wasm/Cargo.toml',
  'Cargo.lock',
  'scripts/build-wasm.sh',
];

function files(path) {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => files(join(path, name)));
}

function inputsHash() {
  const hash = createHash('sha256');
  for (const input of inputs) {
    for (const file of files(join(root, input))) {
      hash.update(relative(root, file));
      hash.update('\0');
      hash.update(readFileSync(file));
      hash.update('\0');
    }
  }
  return hash.digest('hex');
}

const built = outputs.every((f) => existsSync(join(out, f)));
if (process.env.CONCLAVE_SKIP_WASM_BUILD === '1') {
  if (!built) {
    console.error('ensure-wasm: CONCLAVE_SKIP_WASM_BUILD=1 but src/e2ee-wasm/ is empty');
    process.exit(1);
  }
  process.exit(0);
}
if (!existsSync(join(root, 'crates', 'e2ee-wasm'))) {
  // A web/ tree without the Rust sources: use the checked-out module if any.
  if (built) process.exit(0);
  console.error('ensure-wasm: crates/e2ee-wasm not found and src/e2ee-wasm/ is empty');
  process.exit(1);
}
const hash = inputsHash();
const current = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
if (built && current === hash) process.exit(0);

console.log(built ? 'ensure-wasm: E2EE sources changed; rebuilding the wasm module' : 'ensure-wasm: building the E2EE wasm module');
// A nested cargo must not inherit the settings of a cargo that may be running
// us (crates/server/build.rs → npm run build → here).
const env = { ...process.env, E2EE_WASM_OUT: out };
for (const key of Object.keys(env)) {
  if (
    (key.startsWith('CARGO_') && key !== 'CARGO_HOME') ||
    key.startsWith('RUSTC') ||
    key.startsWith('DEP_') ||
    ['CARGO', 'RUSTFLAGS', 'RUSTDOC', 'RUSTDOCFLAGS', 'TARGET', 'HOST', 'OUT_DIR', 'OPT_LEVEL', 'DEBUG', 'PROFILE', 'NUM_JOBS', 'MAKEFLAGS', 'MFLAGS'].includes(key)
  ) {
    delete env[key];
  }
}
const result = spawnSync('bash', [join(root, 'scripts', 'build-wasm.sh')], { cwd: root, env, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(`ensure-wasm: scripts/build-wasm.sh failed (${result.error?.message ?? `exit ${result.status}`})`);
  process.exit(1);
}
writeFileSync(stamp, `${hash}\n`);
