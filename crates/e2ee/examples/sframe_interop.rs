//! Native half of the wasm/native SFrame interop test (see e2ee-wasm-test/).
//!
//! `gen <base_key_hex> <epoch> <leaf> <out.json>`: encrypt sample frames as
//! sender `leaf` and write `[{codec, plaintext, ciphertext}]` (hex).
//! `check <base_key_hex> <epoch> <own_leaf> <in.json>`: decrypt frames made
//! by another implementation, compare plaintexts, check replay rejection.
//! Exits non-zero with a message on any mismatch.

use conclave_e2ee::{Codec, SframeContext};
use std::process::ExitCode;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("odd hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn samples() -> Vec<(u8, Vec<u8>)> {
    let mut key = vec![0x50u8, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    key.extend((0..30_000u32).map(|i| (i * 7 % 251) as u8));
    vec![
        (0, (0..200u32).map(|i| i as u8).collect()),
        (1, key),
        (1, vec![0x31; 1000]),
        (2, b"opaque data channel frame".to_vec()),
        (0, Vec::new()),
    ]
}

fn run() -> Result<(), String> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        return Err("usage: sframe_interop gen|check <key_hex> <epoch> <leaf> <file>".into());
    }
    let key = unhex(&a[2])?;
    let epoch: u64 = a[3].parse().map_err(|_| "epoch")?;
    let leaf: u32 = a[4].parse().map_err(|_| "leaf")?;
    let mut ctx = SframeContext::from_base_key(&key, epoch, leaf).map_err(|e| e.to_string())?;
    match a[1].as_str() {
        "gen" => {
            let mut out = Vec::new();
            let mut items = Vec::new();
            for (codec, pt) in samples() {
                ctx.encrypt(
                    Codec::from_u8(codec).map_err(|e| e.to_string())?,
                    &pt,
                    &mut out,
                )
                .map_err(|e| e.to_string())?;
                items.push(serde_json::json!({"codec": codec, "plaintext": hex(&pt), "ciphertext": hex(&out)}));
            }
            std::fs::write(
                &a[5],
                serde_json::to_string(&items).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            println!("wrote {} frames", items.len());
        }
        "check" => {
            let text = std::fs::read_to_string(&a[5]).map_err(|e| e.to_string())?;
            let items: Vec<serde_json::Value> =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let codec = Codec::from_u8(it["codec"].as_u64().unwrap_or(99) as u8)
                    .map_err(|e| e.to_string())?;
                let ct = unhex(it["ciphertext"].as_str().unwrap_or(""))?;
                let pt = unhex(it["plaintext"].as_str().unwrap_or(""))?;
                ctx.decrypt(codec, &ct, &mut out, 0)
                    .map_err(|e| format!("frame {i}: {e}"))?;
                if out != pt {
                    return Err(format!("frame {i}: plaintext mismatch"));
                }
                if ctx.decrypt(codec, &ct, &mut out, 0).is_ok() {
                    return Err(format!("frame {i}: replay accepted"));
                }
            }
            println!("decrypted {} frames", items.len());
        }
        _ => return Err("mode must be gen or check".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sframe_interop: {e}");
            ExitCode::FAILURE
        }
    }
}
