// Interleaved before/after comparison of join times: alternates two server
// binaries (each embeds its web client), running `join-timeline.mjs` on one,
// then the other, round after round, so both see the same machine load
// (this VM's load changes by the minute), and prints each phase's median
// for both.
//
//   node e2e/tools/join-ab.mjs A B [rounds=3] [--per=2] [--separate-browser]
//
// A and B are each a server binary, or BIN@DIR: that binary, with the joiner
// served the web client built in DIR (join-timeline's --joiner-client), so
// two clients compare on one server with the same members.
// `--per` runs per invocation (each starts its own server and browsers).
// Rounds alternate which binary goes first.
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const [binA, binB] = args.filter((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 3);
const per = Number(args.find((a) => a.startsWith('--per='))?.slice(6) ?? 2);
const extra = args.filter((a) => a === '--separate-browser');
if (!binA || !binB) {
  console.error('usage: node e2e/tools/join-ab.mjs A_BIN B_BIN [rounds] [--per=N] [--separate-browser]');
  process.exit(2);
}
const tool = fileURLToPath(new URL('./join-timeline.mjs', import.meta.url));
const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const runs = { A: [], B: [] };
const loads = [];
let labels = null;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
  for (const which of order) {
    const [bin, client] = (which === 'A' ? binA : binB).split('@');
    loads.push(loadavg()[0]);
    try {
      const out = execFileSync(process.execPath, [tool, String(per), '--json', ...extra, ...(client ? [`--joiner-client=${client}`] : [])], {
        env: { ...process.env, CONCLAVE_BIN: bin },
        maxBuffer: 1 << 30,
        stdio: ['ignore', 'pipe', 'pipe'],
      }).toString();
      const json = JSON.parse(out);
      labels ??= json.table.map((t) => [t.key, t.phase]);
      for (const run of json.runs) runs[which].push(run.ph);
      const tiles = json.runs.map((x) => x.ph.tileFramePresented).join(' ');
      console.error(`round ${r + 1} ${which}: tile ${tiles} (${json.runs.length} of ${per} runs; load ${loadavg()[0].toFixed(2)})`);
    } catch (err) {
      console.error(`round ${r + 1} ${which} failed: ${String(err.message).slice(0, 300)}`);
    }
  }
}
console.log(`A = ${binA}\nB = ${binB}\n${runs.A.length} + ${runs.B.length} runs, ${rounds} rounds, ${extra.length ? 'joiner in its own browser' : 'one browser for all four'}; 1-min load during: ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} (median ${median(loads).toFixed(1)})`);
console.log(`${'ms after the Join click'.padEnd(58)} ${'A'.padStart(7)} ${'B'.padStart(7)}   samples A | B`);
for (const [key, label] of labels ?? []) {
  const a = runs.A.map((p) => p[key]);
  const b = runs.B.map((p) => p[key]);
  const f = (x) => (x === null ? '-' : String(x)).padStart(7);
  console.log(`${label.padEnd(58)} ${f(median(a))} ${f(median(b))}   ${a.map((x) => x ?? '-').join(' ')} | ${b.map((x) => x ?? '-').join(' ')}`);
}
