//! `fsx-emulator`: the FSx for Lustre API emulator as a process, for scripts.
//!
//! Prints `listening on http://127.0.0.1:PORT` once ready. Read counters with
//! `GET /_emulator/stats`; change behaviour with `POST /_emulator/config` (a JSON [`Config`])
//! and `POST /_emulator/fail-next-creates` (`{"count":1,"message":"..."}`).

use clap::Parser;
use fsx_emulator::{Config, Emulator};

#[derive(Parser)]
#[command(version, about = "FSx for Lustre API emulator on 127.0.0.1")]
struct Args {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "FSX_EMULATOR_PORT", default_value_t = 0)]
    port: u16,
    /// The IPv4 address to listen on: loopback unless a test runs in its own network namespace.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::Ipv4Addr,
    /// Milliseconds from CreateFileSystem to AVAILABLE.
    #[arg(long, default_value_t = 2000)]
    create_delay_ms: u64,
    /// Random extra creation delay per file system, up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    create_jitter_ms: u64,
    /// Milliseconds a deleted file system stays DELETING.
    #[arg(long, default_value_t = 1000)]
    delete_delay_ms: u64,
    /// Fraction of requests answered with ThrottlingException.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Fraction of requests answered with InternalServerError.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Milliseconds added to every request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let config = Config {
        create_delay_ms: a.create_delay_ms,
        create_jitter_ms: a.create_jitter_ms,
        delete_delay_ms: a.delete_delay_ms,
        throttle_rate: a.throttle_rate,
        error_rate: a.error_rate,
        latency_ms: a.latency_ms,
        ..Config::default()
    };
    let emulator = Emulator::start_on(config, a.address, a.port).await?;
    println!("listening on {}", emulator.endpoint());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
