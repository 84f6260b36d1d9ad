// What a page actually plays from each remote audio stream, and whether it
// is the sender's microphone.
//
// Chromium's fake microphone (--use-fake-device-for-media-stream) beeps
// every 500 ms: a ~30 ms burst (10-ms RMS about 0.4) after silence. A member
// that decrypts hears that train of beeps, 500 ms apart. Ciphertext handed
// to the Opus decoder is no such thing: measured, it is either concealed
// (the decoder rejects the packet) or decoded into loud noise, so its
// `totalAudioEnergy` grows like a member's and tells nothing; what is
// missing is the microphone's signal. Hence the criterion here: count the
// beeps in what the page plays.

/**
 * Records `ms` of every remote audio track of the page's (last) peer
 * connection, from the track itself (Web Audio, after decoding, as the
 * page's <audio> element gets it), as 10-ms RMS blocks.
 * Returns [{ mid, blocks: number[], sampleRate }].
 */
export async function recordRemoteAudio(page, ms) {
  return page.evaluate(async (duration) => {
    const pc = (window.__e2ePeers ?? []).at(-1);
    if (!pc) return [];
    const ctx = new AudioContext();
    if (ctx.state !== 'running') await ctx.resume();
    const block = Math.round(ctx.sampleRate / 100);
    const streams = [];
    for (const t of pc.getTransceivers()) {
      if (!t.mid || t.receiver.track.kind !== 'audio') continue;
      const source = ctx.createMediaStreamSource(new MediaStream([t.receiver.track]));
      // ScriptProcessorNode needs no module (AudioWorklet would need a
      // script the page's Content-Security-Policy does not allow).
      const tap = ctx.createScriptProcessor(4096, 1, 1);
      const s = { mid: t.mid, blocks: [], sum: 0, n: 0 };
      tap.onaudioprocess = (e) => {
        for (const v of e.inputBuffer.getChannelData(0)) {
          s.sum += v * v;
          if (++s.n === block) {
            s.blocks.push(Math.sqrt(s.sum / block));
            s.sum = 0;
            s.n = 0;
          }
        }
      };
      source.connect(tap);
      tap.connect(ctx.destination); // silent output: the tap only listens
      streams.push(s);
    }
    await new Promise((r) => setTimeout(r, duration));
    await ctx.close();
    return streams.map((s) => ({ mid: s.mid, blocks: s.blocks, sampleRate: ctx.sampleRate }));
  }, ms);
}

const LOUD = 0.1; // a beep's blocks are ~0.4; between beeps ~0 (decay < 0.01 within 100 ms)
const QUIET = 0.01;

/**
 * The fake microphone's beeps in 10-ms RMS `blocks`: runs of 1–6 loud
 * blocks after 200 ms of quiet. `regular` counts successive beeps
 * 450–550 ms apart (the microphone's 500 ms); a page that plays the
 * microphone has ~7 in 4 s, noise has none.
 */
export function beeps(blocks) {
  const at = [];
  for (let i = 25; i < blocks.length; i++) {
    if (blocks[i] <= LOUD || blocks[i - 1] > LOUD) continue;
    let end = i;
    while (end < blocks.length && blocks[end] > LOUD) end++;
    if (end === blocks.length) break;
    if (end - i <= 6 && blocks.slice(i - 25, i - 5).every((b) => b < QUIET)) at.push(i);
    i = end;
  }
  let regular = 0;
  for (let k = 1; k < at.length; k++) if (at[k] - at[k - 1] >= 45 && at[k] - at[k - 1] <= 55) regular++;
  const loud = blocks.filter((b) => b > LOUD).length;
  return { at, regular, loudBlocks: loud, blocks: blocks.length };
}

/**
 * Per remote audio stream of the page's (last) peer connection: packets,
 * energy and concealment as WebRTC reports them (for messages; null when
 * the browser does not report a counter).
 */
export async function audioReceiveStats(page) {
  return page.evaluate(async () => {
    const pc = (window.__e2ePeers ?? []).at(-1);
    if (!pc) return [];
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
      out.push({
        mid: s.mid ?? null,
        packetsReceived: s.packetsReceived ?? null,
        totalAudioEnergy: s.totalAudioEnergy ?? null,
        totalSamplesDuration: s.totalSamplesDuration ?? null,
        concealedSamples: s.concealedSamples ?? null,
        totalSamplesReceived: s.totalSamplesReceived ?? null,
      });
    });
    return out;
  });
}
