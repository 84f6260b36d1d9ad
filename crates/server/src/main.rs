//! `conclave`: end-to-end encrypted video meetings from one binary.
//!
//! Thin glue: resolve the configuration, start the hub (the control task and
//! the media thread with the SFU's UDP port), and serve HTTP(S) + WebSocket
//! signaling + the embedded web client.

mod client_check;
mod config;
mod connections;
mod control;
mod delivery;
mod delivery_task;
mod hub;
mod media;
mod rooms;
mod session;
mod signaling;
mod tls;
mod web;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use config::{Cli, Config};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = client_check::run_subcommand(&args).await {
        std::process::exit(code);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CONCLAVE_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("conclave: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = Config::from_process(cli)?;
    let signer = delivery::Signer::generate()?;
    #[cfg(feature = "test-modes")]
    let signer = signer
        .with_ghost_adds(config.test_ghost_adds)
        .with_mislabelled_media(config.test_mislabel_media);
    let media_addrs = media::MediaAddrs {
        udp_bind: config.udp_bind,
        udp_public: config.udp_public,
        tcp_bind: config.tcp_bind,
        tcp_public: config.tcp_public,
    };
    let (handle, bound) = hub::start(
        media_addrs,
        config.media_threads,
        signer,
        config.max_participants,
    )?;
    let udp_bound = bound.udp;
    let app = web::router(web::AppState {
        hub: handle,
        connections: connections::ConnectionLimit::new(config.max_connections_per_address),
    });
    let tls = tls::rustls_config(&config.tls, config.udp_public.ip()).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the listener: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let shown = if local.ip().is_unspecified() {
        std::net::SocketAddr::new(config.udp_public.ip(), local.port())
    } else {
        local
    };
    let announced = std::net::SocketAddr::new(config.udp_public.ip(), udp_bound.port());
    let tcp_announced = std::net::SocketAddr::new(config.tcp_public.ip(), bound.tcp.port());
    // Tests read this line to learn the ports chosen for `:0`.
    println!(
        "Conclave is running: open {scheme}://{shown}/ in a browser (media on UDP {announced}, bound {udp_bound}; TCP {tcp_announced}, bound {})",
        bound.tcp
    );
    let server = match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)
                .map_err(|e| e.to_string())?
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(|e| e.to_string())?
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
        }
    };
    server.map_err(|e| format!("server stopped: {e}"))
}
