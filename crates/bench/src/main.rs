//! `conclave-bench`: how many packets Conclave forwards per CPU-second, next
//! to a bare UDP relay doing the minimum (AES-256-GCM open once, seal per
//! subscriber). See docs/performance.md.
//!
//! ```sh
//! conclave-bench conclave --fanout 20 --pps 50000 --seconds 10 --pin 0
//! conclave-bench relay    --fanout 20 --pps 50000 --seconds 10 --pin 0
//! conclave-bench table --runs 3
//! ```

mod conclave;
mod load;
mod relay;
mod sys;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};
use load::RunResult;

#[derive(Parser)]
#[command(about = "Forwarding benchmark: Conclave's SFU against a bare UDP relay with AES-256-GCM")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Forward through the real `conclave` binary (one publisher, `fanout` subscribers).
    Conclave(RunArgs),
    /// Forward through the bare UDP relay (the limit).
    Relay(RunArgs),
    /// The standard rows, interleaved, `runs` times each; prints a markdown
    /// table of medians.
    Table(TableArgs),
    /// The relay process itself (started by `relay`).
    #[command(hide = true)]
    RelayServe {
        #[arg(long)]
        fanout: usize,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        seed: String,
    },
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Subscribers receiving the one publisher's stream.
    #[arg(long, default_value_t = 20)]
    pub fanout: usize,
    /// Forwarded packets per second to aim for (the publisher sends pps / fanout).
    #[arg(long, default_value_t = 50_000)]
    pub pps: u64,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Sending before the window opens (after every subscriber receives).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Pin the forwarder (server or relay) to this core, the generator to the others.
    #[arg(long)]
    pub pin: Option<usize>,
    /// Target UDP datagram size.
    #[arg(long, default_value_t = 1200)]
    pub size: usize,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The `conclave` binary (default: $CONCLAVE_BIN, else target/release/conclave).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Conclave mode: once a subscriber's first packet has been authenticated
    /// and decrypted, count its forwarded media datagrams at the socket
    /// without decrypting them. A cheaper generator, so that on a small
    /// machine the server can be given more of it (multi-core runs).
    #[arg(long)]
    pub count_only: bool,
    /// Print the result as one line of JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
struct TableArgs {
    /// Runs of each row and mode.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long)]
    server: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.mode {
        Mode::Conclave(args) => single(&args, conclave::run),
        Mode::Relay(args) => single(&args, relay::run),
        Mode::Table(args) => table(&args),
        Mode::RelayServe {
            fanout,
            seconds,
            seed,
        } => relay::serve(fanout, seconds, &seed),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn single(args: &RunArgs, run: fn(&RunArgs) -> Result<RunResult, String>) -> Result<(), String> {
    if args.fanout == 0 || args.pps == 0 || args.seconds <= 0.0 {
        return Err("--fanout, --pps and --seconds must be positive".into());
    }
    if let Some(core) = args.pin {
        if core >= sys::cpu_count() {
            return Err(format!(
                "--pin {core}: this machine has {} CPUs",
                sys::cpu_count()
            ));
        }
        sys::pin_self_away_from(core)?;
    }
    let result = run(args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).map_err(|e| e.to_string())?
        );
    } else {
        println!("{}", result.summary());
    }
    Ok(())
}

/// The load generator's runtime: `threads` workers (inheriting the pinning).
pub fn runtime(args: &RunArgs) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// One row of the standard table: the issue's loads.
struct Row {
    label: &'static str,
    fanout: usize,
    pps: u64,
    pin: Option<usize>,
}

const ROWS: [Row; 3] = [
    Row {
        label: "50k fwd pps, fan-out 20, pinned",
        fanout: 20,
        pps: 50_000,
        pin: Some(0),
    },
    Row {
        label: "50k fwd pps, fan-out 50, pinned",
        fanout: 50,
        pps: 50_000,
        pin: Some(0),
    },
    Row {
        label: "90k fwd pps, fan-out 20, unpinned",
        fanout: 20,
        pps: 90_000,
        pin: None,
    },
];

const MODES: [&str; 2] = ["conclave", "relay"];

/// Runs every row and mode `runs` times, interleaved (row 1 Conclave, row 1
/// relay, row 2 …, then again), each in a fresh process, and prints medians.
fn table(args: &TableArgs) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut results: Vec<[Vec<RunResult>; 2]> = ROWS.iter().map(|_| [vec![], vec![]]).collect();
    for run in 1..=args.runs {
        for (r, row) in ROWS.iter().enumerate() {
            for (m, mode) in MODES.iter().enumerate() {
                let mut command = Command::new(&me);
                command
                    .arg(mode)
                    .args(["--fanout", &row.fanout.to_string()])
                    .args(["--pps", &row.pps.to_string()])
                    .args(["--seconds", &args.seconds.to_string()])
                    .arg("--json");
                if let Some(core) = row.pin {
                    command.args(["--pin", &core.to_string()]);
                } else {
                    // Unpinned, the generator may use every core too.
                    command.args(["--threads", &sys::cpu_count().to_string()]);
                }
                if let Some(server) = &args.server {
                    command.arg("--server").arg(server);
                }
                let output = command.output().map_err(|e| e.to_string())?;
                let stdout = String::from_utf8_lossy(&output.stdout);
                let parsed = stdout
                    .lines()
                    .rev()
                    .find_map(|l| serde_json::from_str::<RunResult>(l).ok());
                match parsed {
                    Some(result) => {
                        eprintln!("run {run}/{}: {}", args.runs, result.summary());
                        results[r][m].push(result);
                    }
                    None => eprintln!(
                        "run {run}/{}: {mode} {}: failed: {}",
                        args.runs,
                        row.label,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                }
            }
        }
    }
    println!();
    println!(
        "| load | Conclave fwd pps per CPU-s | Conclave cores | Conclave loss | \
         relay fwd pps per CPU-s | relay cores | relay loss | Conclave / relay |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (row, [c, r]) in ROWS.iter().zip(&results) {
        let per = |v: &[RunResult]| median(v.iter().map(|x| x.pps_per_cpu_second));
        let cores = |v: &[RunResult]| median(v.iter().map(|x| x.cores));
        let loss = |v: &[RunResult]| median(v.iter().map(|x| x.loss * 100.0));
        let fmt = |x: Option<f64>, digits: usize| {
            x.map_or_else(|| "—".into(), |x| format!("{x:.digits$}"))
        };
        let ratio = per(c).zip(per(r)).map(|(a, b)| a / b);
        println!(
            "| {} ({} runs) | {} | {} | {}% | {} | {} | {}% | {} |",
            row.label,
            c.len().min(r.len()),
            fmt(per(c).map(|x| x / 1000.0), 1) + "k",
            fmt(cores(c), 2),
            fmt(loss(c), 2),
            fmt(per(r).map(|x| x / 1000.0), 1) + "k",
            fmt(cores(r), 2),
            fmt(loss(r), 2),
            fmt(ratio, 2),
        );
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
