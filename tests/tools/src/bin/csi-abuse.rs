//! The abuse tier: the release driver in a memory cgroup at the chart's limits (node 64 MiB,
//! controller 128 MiB), and, one after another, the attacks a peer on its sockets can make:
//!
//! | attack | what the peer does |
//! |---|---|
//! | `hpack-bomb` | one 16 KiB HEADERS frame adding a 4 KiB table entry and naming it with 1-byte indices, on 8 connections |
//! | `idle-connections` | 2000 connections, half of them silent, half with a preface and nothing else, held |
//! | `unfinished-header-blocks` | 100 connections, each with a header block of HEADERS and CONTINUATION frames left unfinished |
//! | `many-streams` | 20,000 streams of HEADERS only on one connection |
//! | `held-bodies` | 16 connections × 16 streams, each sending a 4 MiB gRPC message as far as flow control allows, never finishing |
//! | `continuation-flood` | zero-length CONTINUATION frames as fast as the socket takes them, for 3 s, reconnecting |
//! | `reset-flood` | streams opened and reset at once (rapid reset), and requests the server must reset, for 3 s, reconnecting |
//! | `fd-exhaustion` | a second instance with 24 file descriptors, its socket held full of connections for 3 s |
//! | `metrics-flood` | 400 connections to `/metrics`, each with an unfinished 64 KiB request head, held |
//!
//! After each, the driver must be alive, its RSS under the limit, and a fresh client's
//! GetPluginInfo must answer within one second (for the idle connections and the metrics
//! flood, also while the attack is held). Prints each figure (peak RSS, RSS after, CPU used
//! during the attack, time to answer) and ends with "abuse: N passed, M failed". Needs root
//! (the memory cgroup).

#![allow(clippy::unwrap_used, reason = "a test program: a panic is the test failing")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fsx_csi_driver::proto::GetPluginInfoRequest;
use fsx_csi_driver::proto::identity_client::IdentityClient;
use fsx_csi_tools::{Killed, rss_kib, wait_socket};
use fsx_emulator::{Config, Emulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[derive(Parser)]
struct Args {
    /// Directory holding the release driver.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Which modes to attack.
    #[arg(long, value_delimiter = ',', default_value = "node,controller")]
    modes: Vec<String>,
    /// Only these attacks (all when empty).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const ATTACKS: &[&str] = &[
    "hpack-bomb",
    "idle-connections",
    "unfinished-header-blocks",
    "many-streams",
    "held-bodies",
    "continuation-flood",
    "reset-flood",
    "fd-exhaustion",
    "metrics-flood",
];

// ---------------------------------------------------------------------------------------
// HTTP/2 frames, by hand.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

use fsx_csi_driver::testing::write_integer as int;

fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A GetPluginInfo request's header block, as literals without indexing.
fn request_block(authority: &[u8]) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    int(&mut b, 0, 4, 4); // :path
    string(&mut b, b"/csi.v1.Identity/GetPluginInfo");
    int(&mut b, 0, 4, 1); // :authority
    string(&mut b, authority);
    int(&mut b, 0, 4, 31); // content-type
    string(&mut b, b"application/grpc");
    b.push(0);
    string(&mut b, b"te");
    string(&mut b, b"trailers");
    b
}

/// The preface and an empty SETTINGS frame.
fn hello() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

async fn dial(socket: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(socket).await
}

/// Reads and drops whatever the server sends until it closes or `limit` passes; returns
/// whether it closed.
async fn drain_until_closed(stream: &mut UnixStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The driver under attack.

/// A memory cgroup (v1 or v2) with a limit, removed when dropped.
struct Cgroup {
    dir: PathBuf,
    procs: PathBuf,
}

impl Cgroup {
    fn create(name: &str, limit: u64) -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        // cgroup v1: a memory hierarchy of its own.
        if let Some(path) = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string())) {
            let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).map_err(|e| e.to_string())?;
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
            return Ok(Self { procs: dir.join("cgroup.procs"), dir });
        }
        // cgroup v2: the unified hierarchy.
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no memory cgroup controller")?;
        let parent = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("memory.max"), limit.to_string()).map_err(|e| format!("memory.max: {e}"))?;
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        Ok(Self { procs: dir.join("cgroup.procs"), dir })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Driver {
    limit_mib: u64,
    child: Killed,
    socket: PathBuf,
    metrics: u16,
    dir: PathBuf,
    _cgroup: Cgroup,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Driver {
    /// Starts the release driver in `mode` inside a fresh memory cgroup of `limit_mib`, with
    /// at most `nofile` file descriptors if given.
    async fn start(bin: &Path, mode: &'static str, limit_mib: u64, nofile: Option<u32>, fsx: &str) -> Driver {
        let dir = std::env::temp_dir().join(format!("fsx-abuse-{}-{mode}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(dir.join("kubelet")).unwrap();
        let socket = dir.join("csi.sock");
        let metrics = free_port();
        let cgroup = Cgroup::create(dir.file_name().unwrap().to_str().unwrap(), limit_mib << 20)
            .unwrap_or_else(|e| panic!("cannot create a memory cgroup (the abuse tier needs root): {e}"));
        // The shell joins the cgroup, sets the descriptor limit, then becomes the driver.
        let limit = nofile.map(|n| format!("ulimit -n {n} && ")).unwrap_or_default();
        let script = format!("echo $$ > '{}' && {limit}exec \"$0\" \"$@\"", cgroup.procs.display());
        let child = Command::new("sh")
            .args(["-c", &script])
            .arg(bin.join("fsx-csi-driver"))
            .args(["--mode", mode, "--endpoint", &format!("unix://{}", socket.display())])
            .args(["--node-id", "abuse-node", "--kubelet-dir"])
            .arg(dir.join("kubelet"))
            .args(["--metrics-address", &format!("127.0.0.1:{metrics}")])
            .env("AWS_ENDPOINT_URL_FSX", fsx)
            .env("AWS_ENDPOINT_URL_EC2", fsx)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "abuse")
            .env("AWS_SECRET_ACCESS_KEY", "abuse")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "error")
            .stderr(Stdio::null())
            .spawn()
            .expect("start fsx-csi-driver");
        let driver = Driver { limit_mib, child: Killed(child), socket, metrics, dir, _cgroup: cgroup };
        wait_socket(&driver.socket, Instant::now()).await;
        // The metrics endpoint comes up before the socket.
        driver
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Resets the kernel's high-water mark of the process's RSS.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// User + system CPU time used so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<u64> = after.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
        let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh client: a new connection and GetPluginInfo, given one second in all.
async fn fresh_call(socket: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let call = async {
        let channel = fsx_csi_tools::connect(socket).await.map_err(|e| format!("connect: {e}"))?;
        IdentityClient::new(channel)
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    match tokio::time::timeout(Duration::from_secs(1), call).await {
        Ok(Ok(_)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer within 1 s".into()),
    }
}

/// What an attack did, for the report.
#[derive(Default)]
struct Report {
    /// A check made while the attack was held (for the attacks that hold connections).
    during: Option<Result<Duration, String>>,
    note: String,
}

// ---------------------------------------------------------------------------------------
// The attacks.

async fn hpack_bomb(d: &Driver) -> Report {
    let mut block = vec![0x40, 0x01, b'x'];
    int(&mut block, 0, 7, 4000);
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.resize(16_384, 0xbe);
    let mut bytes = hello();
    frame(&mut bytes, HEADERS, END_HEADERS | END_STREAM, 1, &block);
    let mut closed = 0;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (socket, bytes) = (d.socket.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = dial(&socket).await else { return false };
            // Two frames, as the controller's 128 MiB fell to two.
            let _ = s.write_all(&bytes).await;
            let mut second = Vec::new();
            frame(&mut second, HEADERS, END_HEADERS | END_STREAM, 3, &bytes[PREFACE.len() + 9 + 9..]);
            let _ = s.write_all(&second).await;
            drain_until_closed(&mut s, Duration::from_secs(3)).await
        }));
    }
    for t in tasks {
        closed += t.await.unwrap() as usize;
    }
    Report { during: None, note: format!("{closed} of 8 connections closed by the driver") }
}

async fn idle_connections(d: &Driver) -> Report {
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        match dial(&d.socket).await {
            Ok(mut s) => {
                if i % 2 == 1 {
                    let _ = s.write_all(&hello()).await;
                }
                held.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    // Held a second: a flood of idle connections may delay new clients that long at most.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = fresh_call(&d.socket).await;
    // Count what the driver closed: a read that ends at once.
    let mut closed = 0;
    for s in &mut held {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    drop(held);
    Report {
        during: Some(during),
        note: format!(
            "{} connections opened ({refused} refused at connect), {closed} closed by the driver",
            2000 - refused
        ),
    }
}

async fn unfinished_header_blocks(d: &Driver) -> Report {
    let mut held = Vec::new();
    for _ in 0..100 {
        let Ok(mut s) = dial(&d.socket).await else { continue };
        let mut bytes = hello();
        // A block that never ends: HEADERS and five full CONTINUATION frames.
        let chunk = vec![0u8; 16_384];
        frame(&mut bytes, HEADERS, 0, 1, &chunk);
        for _ in 0..5 {
            frame(&mut bytes, CONTINUATION, 0, 1, &chunk);
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), s.write_all(&bytes)).await;
        held.push(s);
    }
    // Held past the driver's handshake time.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut closed = 0;
    for s in &mut held {
        if drain_until_closed(s, Duration::from_millis(10)).await {
            closed += 1;
        }
    }
    Report { during: None, note: format!("{} connections held, {closed} closed by the driver", held.len()) }
}

async fn many_streams(d: &Driver) -> Report {
    let Ok(s) = dial(&d.socket).await else { return Report { note: "could not connect".into(), ..Default::default() } };
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), r.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });
    let block = request_block(b"localhost");
    let mut bytes = hello();
    let mut sent = 0;
    for i in 0..20_000u32 {
        frame(&mut bytes, HEADERS, END_HEADERS, 2 * i + 1, &block);
        if bytes.len() > 64 * 1024 {
            if w.write_all(&bytes).await.is_err() {
                break;
            }
            bytes.clear();
        }
        sent = i + 1;
    }
    let _ = w.write_all(&bytes).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(w);
    let answered = reader.await.unwrap();
    Report { during: None, note: format!("{sent} streams opened, {answered} bytes of answers (refusals) read") }
}

/// A connection sending a 4 MiB gRPC message on each of `streams` streams as far as flow
/// control allows, never finishing; returns the bytes it got to send.
async fn hold_bodies(socket: PathBuf, streams: u32, hold: Duration) -> usize {
    let Ok(s) = dial(&socket).await else { return 0 };
    let (mut r, mut w) = s.into_split();
    let block = request_block(b"localhost");
    let mut bytes = hello();
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(4u32 << 20).to_be_bytes());
    for i in 0..streams {
        frame(&mut bytes, HEADERS, END_HEADERS, 2 * i + 1, &block);
        frame(&mut bytes, DATA, 0, 2 * i + 1, &prefix);
    }
    if w.write_all(&bytes).await.is_err() {
        return 0;
    }
    // Windows: the server's SETTINGS give the stream window; WINDOW_UPDATEs add to both.
    let mut conn_window: i64 = 65_535 - 5 * streams as i64;
    let mut stream_window: std::collections::HashMap<u32, i64> = (0..streams).map(|i| (2 * i + 1, -5)).collect();
    let mut initial: i64 = 65_535;
    let mut sent = 0usize;
    let mut input = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let end = tokio::time::Instant::now() + hold;
    loop {
        // Send what the windows allow, in 16 KiB frames, up to just under 4 MiB per stream.
        let mut out = Vec::new();
        for (id, win) in stream_window.iter_mut() {
            let room = (*win + initial).min(conn_window).min(16_384);
            if room > 0 {
                frame(&mut out, DATA, 0, *id, &vec![0u8; room as usize]);
                *win -= room;
                conn_window -= room;
                sent += room as usize;
            }
        }
        if !out.is_empty() && w.write_all(&out).await.is_err() {
            return sent;
        }
        match tokio::time::timeout_at(end, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return sent,
            Ok(Ok(n)) => input.extend_from_slice(&buf[..n]),
        }
        while input.len() >= 9 {
            let len = u32::from_be_bytes([0, input[0], input[1], input[2]]) as usize;
            if input.len() < 9 + len {
                break;
            }
            let (kind, flags) = (input[3], input[4]);
            let id = u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
            let p = &input[9..9 + len];
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    for s in p.chunks(6) {
                        if s.len() == 6 && u16::from_be_bytes([s[0], s[1]]) == 4 {
                            initial = u32::from_be_bytes([s[2], s[3], s[4], s[5]]) as i64;
                        }
                    }
                    let mut ack = Vec::new();
                    frame(&mut ack, SETTINGS, ACK, 0, &[]);
                    let _ = w.write_all(&ack).await;
                }
                WINDOW_UPDATE if p.len() == 4 => {
                    let inc = (u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff) as i64;
                    if id == 0 {
                        conn_window += inc;
                    } else if let Some(win) = stream_window.get_mut(&id) {
                        *win += inc;
                    }
                }
                RST_STREAM => {
                    stream_window.remove(&id);
                }
                PING if flags & ACK == 0 => {
                    let mut pong = Vec::new();
                    frame(&mut pong, PING, ACK, 0, p);
                    let _ = w.write_all(&pong).await;
                }
                GOAWAY => return sent,
                _ => {}
            }
            input.drain(..9 + len);
        }
        // Never complete a message.
        stream_window.retain(|_, win| *win > -((4 << 20) - 16_384 - 65_535));
    }
}

async fn held_bodies(d: &Driver) -> Report {
    let tasks: Vec<_> =
        (0..16).map(|_| tokio::spawn(hold_bodies(d.socket.clone(), 16, Duration::from_secs(4)))).collect();
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    Report { during: None, note: format!("{:.1} MiB of unfinished bodies sent", sent as f64 / (1 << 20) as f64) }
}

async fn flood(d: &Driver, what: &'static str) -> Report {
    let end = Instant::now() + Duration::from_secs(3);
    let mut connections = 0;
    let mut frames = 0u64;
    let mut rng = 1u32;
    while Instant::now() < end {
        let Ok(s) = dial(&d.socket).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections += 1;
        let (mut r, mut w) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        let mut bytes = hello();
        if what == "continuation" {
            frame(&mut bytes, HEADERS, 0, 1, &[0x82]);
        }
        let _ = w.write_all(&bytes).await;
        let mut stream = 1u32;
        while Instant::now() < end && !reader.is_finished() {
            let mut batch = Vec::with_capacity(64 * 1024);
            for _ in 0..1000 {
                match what {
                    "continuation" => frame(&mut batch, CONTINUATION, 0, 1, &[]),
                    _ => {
                        // Alternately: a request reset at once, and one the server must reset
                        // (a connection-specific header field).
                        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        if rng & 1 == 0 {
                            frame(&mut batch, HEADERS, END_HEADERS, stream, &request_block(b"localhost"));
                            frame(&mut batch, RST_STREAM, 0, stream, &8u32.to_be_bytes());
                        } else {
                            let mut block = request_block(b"localhost");
                            block.push(0);
                            string(&mut block, b"connection");
                            string(&mut block, b"close");
                            frame(&mut batch, HEADERS, END_HEADERS | END_STREAM, stream, &block);
                        }
                        stream += 2;
                    }
                }
                frames += 1;
            }
            match tokio::time::timeout(Duration::from_millis(500), w.write_all(&batch)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        drop(w);
        reader.abort();
    }
    Report { during: None, note: format!("{frames} frames on {connections} connections in 3 s") }
}

async fn fd_exhaustion(bin: &Path, fsx: &str, mode: &'static str, limit_mib: u64) -> (Driver, Report) {
    let d = Driver::start(bin, mode, limit_mib, Some(24), fsx).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(mut s) = dial(&d.socket).await {
            let _ = s.write_all(&hello()).await;
            held.push(s);
        }
    }
    let cpu = d.cpu();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = d.cpu() - cpu;
    drop(held);
    let note = format!(
        "200 connections against 24 descriptors held 3 s: the driver used {:.0}% of a core meanwhile",
        spent.as_secs_f64() / 3.0 * 100.0
    );
    (d, Report { during: None, note })
}

async fn metrics_flood(d: &Driver) -> Report {
    let mut held = Vec::new();
    let head = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(64 * 1024));
    for _ in 0..400 {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(("127.0.0.1", d.metrics)))
                .await
        {
            let _ = tokio::time::timeout(Duration::from_millis(50), s.write_all(head.as_bytes())).await;
            held.push(s);
        }
    }
    let during = fresh_call(&d.socket).await;
    drop(held);
    // A scrape answers again once the flood is gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scrape =
        fsx_csi_tools::http_get(&format!("127.0.0.1:{}", d.metrics), "/metrics").await.map(|b| b.len()).unwrap_or(0);
    Report { during: Some(during), note: format!("400 connections held; a scrape afterwards read {scrape} bytes") }
}

// ---------------------------------------------------------------------------------------

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let emulator = Emulator::start(Config::default(), 0).await.unwrap();
    let fsx = emulator.endpoint();
    let mut passed = 0;
    let mut failed = 0;
    for mode in &args.modes {
        let (mode, limit): (&'static str, u64) = match mode.as_str() {
            "node" => ("node", 64),
            "controller" => ("controller", 128),
            other => panic!("unknown mode {other}"),
        };
        let mut d = Driver::start(&args.bin_dir, mode, limit, None, &fsx).await;
        let idle = rss_kib(d.pid()).0;
        println!("{mode}: release driver in a {limit} MiB memory cgroup, idle RSS {}", mib(idle));
        for attack in ATTACKS.iter().copied().filter(|a| args.only.is_empty() || args.only.iter().any(|o| o == a)) {
            d.reset_peak();
            let cpu = d.cpu();
            let started = Instant::now();
            let mut spare = None;
            let report = match attack {
                "hpack-bomb" => hpack_bomb(&d).await,
                "idle-connections" => idle_connections(&d).await,
                "unfinished-header-blocks" => unfinished_header_blocks(&d).await,
                "many-streams" => many_streams(&d).await,
                "held-bodies" => held_bodies(&d).await,
                "continuation-flood" => flood(&d, "continuation").await,
                "reset-flood" => flood(&d, "reset").await,
                "fd-exhaustion" => {
                    let (other, report) = fd_exhaustion(&args.bin_dir, &fsx, mode, limit).await;
                    spare = Some(other);
                    report
                }
                "metrics-flood" => metrics_flood(&d).await,
                _ => unreachable!(),
            };
            let took = started.elapsed();
            let target = spare.as_mut().unwrap_or(&mut d);
            let cpu_used = target.cpu().saturating_sub(cpu);
            let peak = rss_kib(target.pid()).1;
            // The driver has a moment to release what the attack made it hold.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let alive = target.alive();
            let after = rss_kib(target.pid()).0;
            let answer = fresh_call(&target.socket).await;
            let under = after > 0 && after < target.limit_mib * 1024;
            let during_ok = report.during.as_ref().is_none_or(|d| d.is_ok());
            let ok = alive && under && answer.is_ok() && during_ok;
            let answer_text = match &answer {
                Ok(t) => ms(*t),
                Err(e) => format!("FAILED ({e})"),
            };
            let during_text = match &report.during {
                Some(Ok(t)) => format!(", {} while held", ms(*t)),
                Some(Err(e)) => format!(", FAILED while held ({e})"),
                None => String::new(),
            };
            println!(
                "  {} {mode:<10} {attack:<25} peak {:>9}  after {:>9}  cpu {:>7} in {:>6}  GetPluginInfo {answer_text}{during_text}{}  [{}]",
                if ok { "ok  " } else { "FAIL" },
                mib(peak),
                mib(after),
                ms(cpu_used),
                format!("{:.1} s", took.as_secs_f64()),
                if alive { "" } else { "  KILLED" },
                report.note,
            );
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
            drop(spare);
            if !d.alive() {
                // Start again for the next attack.
                d = Driver::start(&args.bin_dir, mode, limit, None, &fsx).await;
            }
        }
    }
    println!("abuse: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
