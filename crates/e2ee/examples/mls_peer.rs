//! Native MLS peer for the wasm/native MLS interop test (see e2ee-wasm-test/).
//!
//! Line protocol on stdin/stdout, binary as hex. Starts a group as "Native"
//! with the invite secret given as argv[1] (room "interop-room"), then:
//! * `join <hex>`  → processes a join request, commits, prints
//!   `welcome <hex>`, `code <security code>`, `chat <hex>`, `frame <hex>`;
//! * `chat <hex>`  → prints `got-chat <text>`;
//! * `frame <hex>` → prints `got-frame <text>` (Opus codec);
//! * `quit`.
//!
//! Errors are printed as `error <message>`.

use conclave_e2ee::{Codec, Event, Member};
use std::io::{BufRead, Write};

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

fn handle(m: &mut Member, line: &str) -> Result<Vec<String>, String> {
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    let e = |e: conclave_e2ee::Error| e.to_string();
    let mut out = Vec::new();
    match cmd {
        "join" => {
            let ev = m.process_incoming(&unhex(arg)?, 0).map_err(e)?;
            if !matches!(ev.first(), Some(Event::JoinVerified { .. })) {
                return Err(format!("join not verified: {ev:?}"));
            }
            let c = m.commit_pending().map_err(e)?.ok_or("nothing to commit")?;
            m.process_incoming(&c.commit, 0).map_err(e)?;
            out.push(format!("welcome {}", hex(&c.welcome.ok_or("no welcome")?)));
            out.push(format!("code {}", m.security_code().map_err(e)?));
            out.push(format!(
                "chat {}",
                hex(&m.encrypt_chat("hello from native").map_err(e)?)
            ));
            let mut f = Vec::new();
            m.sframe_encrypt(Codec::Opus, b"native frame", &mut f)
                .map_err(e)?;
            out.push(format!("frame {}", hex(&f)));
        }
        "chat" => match m.process_incoming(&unhex(arg)?, 0).map_err(e)?.first() {
            Some(Event::Chat { text, .. }) => out.push(format!("got-chat {text}")),
            other => return Err(format!("expected chat, got {other:?}")),
        },
        "frame" => {
            let mut f = Vec::new();
            m.sframe_decrypt(Codec::Opus, &unhex(arg)?, &mut f, 0)
                .map_err(e)?;
            out.push(format!("got-frame {}", String::from_utf8_lossy(&f)));
        }
        _ => return Err(format!("unknown command {cmd}")),
    }
    Ok(out)
}

fn main() {
    let secret = std::env::args().nth(1).unwrap_or_default();
    let mut m = match Member::new("Native", b"interop-room", Some(secret.as_bytes())) {
        Ok(m) => m,
        Err(e) => {
            println!("error {e}");
            return;
        }
    };
    if let Err(e) = m.create_group(&[], 0) {
        println!("error {e}");
        return;
    }
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    let _ = writeln!(o, "ready");
    let _ = o.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "quit" {
            break;
        }
        match handle(&mut m, line) {
            Ok(lines) => {
                for l in lines {
                    let _ = writeln!(o, "{l}");
                }
            }
            Err(err) => {
                let _ = writeln!(o, "error {err}");
            }
        }
        let _ = writeln!(o, "done");
        let _ = o.flush();
    }
}
