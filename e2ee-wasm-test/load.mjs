// Loads the wasm-bindgen (--target web) output in Node and locates the
// native example binaries; shared by the tests and the benchmark.
import { readFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..');
export const pkgDir = resolve(root, process.env.E2EE_WASM_OUT || 'target-wasm/pkg');

export async function loadWasm() {
  const js = join(pkgDir, 'conclave_e2ee_wasm.js');
  if (!existsSync(js)) {
    throw new Error(`${js} missing: run scripts/build-wasm.sh first`);
  }
  const mod = await import(js);
  mod.initSync({ module: readFileSync(join(pkgDir, 'conclave_e2ee_wasm_bg.wasm')) });
  return mod;
}

// Path of a native example binary, building it if needed.
export function nativeExample(name) {
  const dir = process.env.CARGO_TARGET_DIR
    ? resolve(root, process.env.CARGO_TARGET_DIR)
    : join(root, 'target');
  // scripts/test.sh sets release: `cargo test --release` has built the examples already.
  const release = process.env.E2EE_NATIVE_PROFILE === 'release';
  const bin = join(dir, release ? 'release' : 'debug', 'examples', name);
  if (!existsSync(bin)) {
    const profile = release ? ['--release'] : [];
    execFileSync('cargo', ['build', '-q', ...profile, '-p', 'conclave-e2ee', '--example', name], {
      cwd: root,
      stdio: 'inherit',
    });
  }
  return bin;
}

export const hex = (u8) => Buffer.from(u8).toString('hex');
export const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));
