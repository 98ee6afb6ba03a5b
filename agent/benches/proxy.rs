//! `make bench` (proxy part): requests/s and latency, direct vs. through the agent,
//! measured in the same run on the same machine, plus the agent's RSS.
//!
//! Roles, all separate processes: an echo-speed MCP upstream (this binary re-executed with
//! `BENCH_ROLE=upstream`), the release `mcp-ledger-agent` in local mode, and the load
//! generator (this process: keep-alive HTTP/1.1 connections, closed loop for saturation,
//! open loop at a fixed rate for latency). Optionally the real Python SDK server.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::{
    Proc, context_switches, cpu_seconds, cpu_steal_ticks, free_port, on_cpus, proc_status_kib, steal_percent_since,
    thread_cpu_seconds, wait_port,
};

#[path = "support.rs"]
mod support;

const ANSWER: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;

fn main() {
    let port = || std::env::var("BENCH_PORT").unwrap().parse().unwrap();
    match std::env::var("BENCH_ROLE").as_deref() {
        Ok("upstream") => return upstream(port()),
        Ok("bare-proxy") => return bare_proxy(port(), std::env::var("BENCH_UPSTREAM").unwrap().parse().unwrap()),
        Ok("tcp-relay") => return tcp_relay(port(), std::env::var("BENCH_UPSTREAM").unwrap().parse().unwrap()),
        _ => {}
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run());
}

/// An echo-speed MCP upstream: answers every request with a fixed tools/call result.
fn upstream(port: u16) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

/// The floor for any proxy hop on this machine: the hyper server the agent uses and, as
/// the agent holds them, one hyper HTTP/1.1 client connection per client connection, on
/// one thread like the sidecar, forwarding without looking at anything. What the agent
/// adds above this is the cost of capturing.
fn bare_proxy(port: u16, upstream: u16) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::task::spawn_local(async move {
                let up = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                up.set_nodelay(true).unwrap();
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await.unwrap();
                tokio::task::spawn_local(conn);
                let sender = std::rc::Rc::new(std::cell::RefCell::new(sender));
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sender = sender.clone();
                    async move {
                        std::future::poll_fn(|cx| sender.borrow_mut().poll_ready(cx)).await?;
                        let answer = sender.borrow_mut().send_request(req);
                        answer.await
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

/// The floor for any hop that is a process of its own: bytes copied between the client's
/// connection and one upstream connection of its own, on one thread, with no HTTP parsed
/// at all. What it costs is the kernel's work for a second pair of loopback sockets and
/// the runtime's wakeups; no proxy that reads the messages can cost less.
fn tcp_relay(port: u16, upstream: u16) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn agent(upstream: u16, work: &std::path::Path) -> (Proc, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    (started(&mut agent_command(None, upstream, port, admin, work), port), port, admin)
}

/// `cmd` started, once something listens on `port`.
fn started(cmd: &mut Command, port: u16) -> Proc {
    let child = Proc(cmd.stdout(Stdio::null()).spawn().unwrap());
    wait_port(port);
    child
}

/// The agent in local mode in front of `upstream`, run by `wrapper` (valgrind) if given.
fn agent_command(wrapper: Option<Command>, upstream: u16, port: u16, admin: u16, work: &std::path::Path) -> Command {
    // BENCH_AGENT_BIN runs another build (an A/B comparison of two changes). Not
    // MCP_LEDGER_AGENT_BIN: that names the debug build `make e2e` tests.
    let bin = std::env::var_os("BENCH_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/mcp-ledger-agent"));
    assert!(bin.exists(), "{} missing: make bench builds it with `cargo build --release`", bin.display());
    let mut cmd = wrapped(wrapper, bin);
    cmd.args(["--mode", "local", "--server-name", "bench", "--log", "error"])
        .arg(format!("--upstream=http://127.0.0.1:{upstream}"))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--admin=127.0.0.1:{admin}"))
        .arg(format!("--jsonl={}", work.join("records.jsonl").display()));
    cmd
}

/// This binary in `role` (see `main`) on `port`, run by `wrapper` if given.
fn role_command(wrapper: Option<Command>, role: &str, port: u16) -> Command {
    let mut cmd = wrapped(wrapper, std::env::current_exe().unwrap());
    cmd.env("BENCH_ROLE", role).env("BENCH_PORT", port.to_string());
    cmd
}

/// The bare proxy in front of `upstream`, run by `wrapper` if given.
fn bare_proxy_command(wrapper: Option<Command>, upstream: u16, port: u16) -> Command {
    forwarder_command(wrapper, "bare-proxy", upstream, port)
}

/// A forwarding `role` (`bare-proxy`, `tcp-relay`) on `port` in front of `upstream`.
fn forwarder_command(wrapper: Option<Command>, role: &str, upstream: u16, port: u16) -> Command {
    let mut cmd = role_command(wrapper, role, port);
    cmd.env("BENCH_UPSTREAM", upstream.to_string());
    cmd
}

/// `program`, or `wrapper` running it.
fn wrapped(wrapper: Option<Command>, program: std::path::PathBuf) -> Command {
    match wrapper {
        Some(mut w) => {
            w.arg(program);
            w
        }
        None => Command::new(program),
    }
}

/// Sequential requests for the instruction counts: fewer and more, so that what the
/// process does once (start-up, policy compilation, shutdown) drops out of the difference.
const COUNTED: [usize; 2] = [200, 1_200];

/// User-space instructions per request of the bare proxy and of the agent (per thread),
/// counted by valgrind's callgrind. Unlike a timing, the count is the same on a busy
/// machine as on an idle one, so it compares two builds where timings cannot; it leaves
/// out the kernel's share (system calls, TCP).
async fn instructions(up_port: u16, work: &std::path::Path) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("\n[instructions per request] skipped: valgrind missing (make bench installs it from Debian)");
        return;
    }
    let (few, many) = (COUNTED[0], COUNTED[1]);
    println!(
        "\n[instructions per request: valgrind callgrind, user space only, {many} - {few} sequential requests, one connection]"
    );
    let mut bare = [0u64; 2];
    let mut agent = [Vec::new(), Vec::new()];
    for (i, n) in COUNTED.into_iter().enumerate() {
        let port = free_port();
        let out = work.join(format!("callgrind-bare-{n}"));
        let cmd = bare_proxy_command(Some(callgrind(&out)), up_port, port);
        bare[i] = counted(cmd, port, None, n, &out).await.iter().sum();

        let (port, admin) = (free_port(), free_port());
        let out = work.join(format!("callgrind-agent-{n}"));
        let cmd = agent_command(Some(callgrind(&out)), up_port, port, admin, work);
        agent[i] = counted(cmd, port, Some(admin), n, &out).await;
    }
    let per_request = |a: u64, b: u64| b.saturating_sub(a) as f64 / (many - few) as f64;
    let bare_per = per_request(bare[0], bare[1]);
    let thread = |t: usize| per_request(agent[0].get(t).copied().unwrap_or(0), agent[1].get(t).copied().unwrap_or(0));
    let agent_per: f64 = (0..agent[1].len()).map(thread).sum();
    println!("  bare proxy    {bare_per:>10.0}");
    println!(
        "  via agent     {agent_per:>10.0}   ({:.1} x the bare proxy; proxy thread {:.0}, other threads (record pipeline) {:.0})",
        agent_per / bare_per,
        thread(0),
        agent_per - thread(0)
    );
}

/// Runs `cmd` (under callgrind, writing to `out`), sends it `n` requests on `port`, waits
/// for the agent behind `admin` (if any) to process them, stops it: each thread's count.
async fn counted(mut cmd: Command, port: u16, admin: Option<u16>, n: usize, out: &std::path::Path) -> Vec<u64> {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_port(port);
    sequential(port, n).await;
    if let Some(admin) = admin {
        drained(admin).await;
    }
    terminate(child);
    callgrind_threads(out)
}

fn callgrind(out: &std::path::Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--separate-threads=yes"]).arg(format!("--callgrind-out-file={}", out.display()));
    cmd
}

/// SIGTERM (the agent drains and exits; valgrind writes its counts on the way out).
fn terminate(mut child: std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// The instruction total of each thread of a callgrind run (`<out>-01`, `<out>-02`, ...).
fn callgrind_threads(out: &std::path::Path) -> Vec<u64> {
    (1..)
        .map(|t| std::fs::read_to_string(format!("{}-{t:02}", out.display())))
        .take_while(Result::is_ok)
        .map(|text| {
            let text = text.unwrap();
            let summary = text
                .lines()
                .find_map(|l| l.strip_prefix("summary:"))
                .or_else(|| text.lines().find_map(|l| l.strip_prefix("totals:")));
            summary.and_then(|s| s.trim().parse().ok()).unwrap_or(0)
        })
        .collect()
}

/// `n` requests one after another over one connection.
async fn sequential(port: u16, n: usize) {
    let mut send = connect(port).await;
    for _ in 0..n {
        // The connection takes the next request only once it has finished the last one.
        send.ready().await.expect("connection ready");
        let resp = send.send_request(request(port, "/mcp")).await.expect("request");
        assert!(resp.status().is_success(), "status {}", resp.status());
        resp.into_body().collect().await.unwrap();
    }
}

async fn metrics(admin: u16) -> String {
    let mut send = connect(admin).await;
    let req = hyper::Request::get("/metrics").header("host", "127.0.0.1").body(Full::new(Bytes::new())).unwrap();
    let resp = send.send_request(req).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b' ') || l.as_bytes().get(name.len()) == Some(&b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Waits until the agent has processed everything it captured (queue depth 0).
async fn drained(admin: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(admin).await;
        if metric_sum(&text, "mcp_ledger_queue_depth") == 0.0 || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(port: u16) -> http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send
}

fn request(port: u16, path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(Full::new(Bytes::from_static(BODY_WITH_META.as_bytes())))
        .unwrap()
}

/// The latency measurement alternates direct, bare-proxy and agent rounds this many times.
const LATENCY_ROUNDS: usize = 4;

const BODY_WITH_META: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// Closed loop: `conns` connections each sending back-to-back for `secs`. Returns req/s.
async fn saturate(port: u16, path: &'static str, conns: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (stop, done) = (stop.clone(), done.clone());
        let mut send = connect(port).await;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = send.send_request(request(port, path)).await.expect("request");
                assert!(resp.status().is_success(), "status {}", resp.status());
                resp.into_body().collect().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / elapsed
}

/// Open loop at `rate` requests/s over `conns` connections for `secs`: latencies in µs.
async fn fixed_rate(port: u16, path: &'static str, rate: u32, conns: usize, secs: f64) -> Vec<f64> {
    let total = (f64::from(rate) * secs) as usize;
    let per_conn = total / conns;
    let interval = Duration::from_secs_f64(conns as f64 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut send = connect(port).await;
        let offset = interval.mul_f64(c as f64 / conns as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_conn);
            for i in 0..per_conn {
                let scheduled = start + offset + interval * i as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                // Measured from the actual send: tokio's timer wheel has 1 ms resolution, so
                // the scheduled time would add up to 1 ms of timer jitter to both paths.
                let sent = Instant::now();
                let resp = send.send_request(request(port, path)).await.expect("request");
                resp.into_body().collect().await.unwrap();
                lat.push(sent.elapsed().as_secs_f64() * 1e6);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all
}

/// One path of the saturation measurement: direct (no `pid`) or through a hop process,
/// the agent's with its admin port (to wait until its pipeline has drained).
struct Hop {
    port: u16,
    pid: Option<u32>,
    admin: Option<u16>,
}

/// What saturating one path measured over all rounds.
struct Measured {
    rates: Vec<f64>,
    secs: f64,
    /// CPU seconds of the load generator and the upstream.
    ends: f64,
    /// CPU seconds of the hop process, and of its record pipeline thread (the agent).
    hop: f64,
    pipeline: f64,
}

impl Measured {
    fn best(&self) -> f64 {
        self.rates.iter().cloned().fold(0.0, f64::max)
    }

    /// µs of `cpu` seconds per request sent.
    fn per_request(&self, cpu: f64) -> f64 {
        cpu / self.rates.iter().map(|rate| rate * self.secs).sum::<f64>() * 1e6
    }
}

/// Saturates each of `hops` in turn, twice over (so that a burst of the machine's other
/// load falls on every path), counting the CPU of `ends` (load generator and upstream).
async fn saturation(hops: &[Hop], ends: [u32; 2], secs: f64) -> Vec<Measured> {
    for hop in hops {
        saturate(hop.port, "/mcp", 8, 0.5).await; // warm-up: connections, pools
    }
    let ends_cpu = || ends.iter().copied().map(cpu_seconds).sum::<f64>();
    let mut measured: Vec<Measured> =
        hops.iter().map(|_| Measured { rates: Vec::new(), secs, ends: 0.0, hop: 0.0, pipeline: 0.0 }).collect();
    for _ in 0..2 {
        for (hop, m) in hops.iter().zip(&mut measured) {
            let hop_cpu = || hop.pid.map_or(0.0, cpu_seconds);
            let pipeline_cpu = || hop.pid.map_or(0.0, |pid| thread_cpu_seconds(pid, "mcp-ledger-pipe"));
            let before = (ends_cpu(), hop_cpu(), pipeline_cpu());
            m.rates.push(saturate(hop.port, "/mcp", 32, secs).await);
            if let Some(admin) = hop.admin {
                drained(admin).await;
            }
            m.ends += ends_cpu() - before.0;
            m.hop += hop_cpu() - before.1;
            m.pipeline += pipeline_cpu() - before.2;
        }
    }
    measured
}

/// Prints direct, tcp relay, bare proxy and agent, measured in that order.
fn report(m: &[Measured], target: &str) {
    let [direct, relay, bare, via] = m else { panic!("four paths") };
    let d = direct.best();
    let of_direct = |p: &Measured| p.best() / d * 100.0;
    println!("  direct        {d:>10.0} req/s");
    println!(
        "  tcp relay     {:>10.0} req/s   ({:.1} % of direct: the floor of any hop)",
        relay.best(),
        of_direct(relay)
    );
    println!(
        "  bare proxy    {:>10.0} req/s   ({:.1} % of direct: one hyper hop, capture aside)",
        bare.best(),
        of_direct(bare)
    );
    println!("  via agent     {:>10.0} req/s", via.best());
    println!("  ratio         {:>10.1} %   {target}", of_direct(via));
    let (agent, pipeline) = (via.per_request(via.hop), via.per_request(via.pipeline));
    println!(
        "  agent CPU per request {agent:.1} µs: proxy {:.1} µs, record pipeline (capture, redaction, JSON lines) {pipeline:.1} µs",
        agent - pipeline,
    );
    println!(
        "  bare proxy CPU per request {:.1} µs, tcp relay {:.1} µs",
        bare.per_request(bare.hop),
        relay.per_request(relay.hop)
    );
}

/// The CPUs this process may run on (`Cpus_allowed_list`, as `0-1,4`).
fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim();
    let range = |r: &str| -> Vec<u32> {
        let mut ends = r.splitn(2, '-').map(|n| n.parse::<u32>().ok());
        match (ends.next().flatten(), ends.next()) {
            (Some(a), None) => vec![a],
            (Some(a), Some(Some(b))) => (a..=b).collect(),
            _ => Vec::new(),
        }
    };
    list.split(',').flat_map(range).collect()
}

/// Moves every thread of this process (the load generator) to `cpus`.
fn pin_self(cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Saturation again with the hop on a core of its own, as a sidecar with its own CPU
/// request: the load generator and the upstream share one CPU, the relay, bare proxy
/// and agent (each in turn) get another. Direct then runs on one core, and a hop slows
/// the path only if it needs more CPU per request than the two ends together.
async fn one_core_each(work: &std::path::Path, secs: f64) {
    let cpus = allowed_cpus();
    let all = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let [ends_cpu, hop_cpu] = match cpus.as_slice() {
        [a, b, ..] => [a.to_string(), b.to_string()],
        _ => return println!("\n[one core each] skipped: needs two CPUs, this process may use {all:?}"),
    };
    if !pin_self(&ends_cpu) {
        return println!("\n[one core each] skipped: taskset (util-linux) could not pin the load generator");
    }
    println!(
        "\n[one core each: load generator and upstream on CPU {ends_cpu}, the hop alone on CPU {hop_cpu}; saturation, 32 connections]"
    );
    let up_port = free_port();
    let up = started(&mut role_command(Some(on_cpus(&ends_cpu)), "upstream", up_port), up_port);
    let (relay_port, bare_port, agent_port, admin) = (free_port(), free_port(), free_port(), free_port());
    let relay = started(&mut forwarder_command(Some(on_cpus(&hop_cpu)), "tcp-relay", up_port, relay_port), relay_port);
    let bare = started(&mut bare_proxy_command(Some(on_cpus(&hop_cpu)), up_port, bare_port), bare_port);
    let agent = started(&mut agent_command(Some(on_cpus(&hop_cpu)), up_port, agent_port, admin, work), agent_port);
    let hops = [
        Hop { port: up_port, pid: None, admin: None },
        Hop { port: relay_port, pid: Some(relay.0.id()), admin: None },
        Hop { port: bare_port, pid: Some(bare.0.id()), admin: None },
        Hop { port: agent_port, pid: Some(agent.0.id()), admin: Some(admin) },
    ];
    let steal = cpu_steal_ticks();
    let measured = saturation(&hops, [std::process::id(), up.0.id()], secs).await;
    report(&measured, "(the hop's core is its own)");
    print_steal(steal);
    // The hop's core serves 1 / h requests per second, the ends' core 1 / e: 70 % of
    // direct leaves the hop e / 0.7 µs per request.
    let ends = measured[0].per_request(measured[0].ends);
    println!(
        "  load generator and upstream CPU per request {ends:.1} µs direct: 70 % of direct leaves a hop on its own core {:.1} µs",
        ends / 0.7
    );
    pin_self(&all);
}

/// How much of the machine's CPU time the hypervisor gave to other guests since `before`.
/// Timings taken while it is well above zero measure the other guests too; near zero, the
/// host can still be busy in ways steal does not show, so it is a warning, not a pass.
fn print_steal(before: (u64, u64)) {
    let steal = steal_percent_since(before);
    println!(
        "  host CPU steal during this section: {steal:.1} % (well above 0: these timings measure other guests too)"
    );
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Resident memory in MiB (1024 × 1024 bytes; the kernel reports KiB).
fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:") as f64 / 1024.0
}

async fn run() {
    let secs: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
    let work = std::env::temp_dir().join(format!("mcp-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let up_port = free_port();
    let up_proc = started(&mut role_command(None, "upstream", up_port), up_port);
    let up_pid = up_proc.0.id();
    // BENCH_ONLY runs one section on its own, for an A/B comparison of two builds
    // (with BENCH_AGENT_BIN): `instructions`, `one-core-each` or `latency`.
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        match only.as_str() {
            "instructions" => instructions(up_port, &work).await,
            "one-core-each" => one_core_each(&work, secs).await,
            "latency" => {
                let (relay_port, bare_port) = (free_port(), free_port());
                let _relay = started(&mut forwarder_command(None, "tcp-relay", up_port, relay_port), relay_port);
                let _bare = started(&mut bare_proxy_command(None, up_port, bare_port), bare_port);
                let (_agent, agent_port, _) = agent(up_port, &work);
                latency([up_port, relay_port, bare_port, agent_port], secs).await;
            }
            other => panic!("BENCH_ONLY={other}: expected `instructions`, `one-core-each` or `latency`"),
        }
        clean_up(&work);
        return;
    }
    let relay_port = free_port();
    let relay_proc = started(&mut forwarder_command(None, "tcp-relay", up_port, relay_port), relay_port);
    let relay_pid = relay_proc.0.id();
    let bare_port = free_port();
    let bare_proc = started(&mut bare_proxy_command(None, up_port, bare_port), bare_port);
    let bare_pid = bare_proc.0.id();
    let (agent_proc, agent_port, agent_admin) = agent(up_port, &work);
    let pid = agent_proc.0.id();
    let rss_idle = rss_mib(pid);
    // An idle sidecar runs next to every MCP server: it should not wake up at all.
    let idle = Duration::from_secs(2);
    let (cpu_before, switches_before) = (cpu_seconds(pid), context_switches(pid));
    tokio::time::sleep(idle).await;
    let idle_cpu = (cpu_seconds(pid) - cpu_before) / idle.as_secs_f64();
    let idle_wakeups = (context_switches(pid) - switches_before) as f64 / idle.as_secs_f64();

    println!("mcp-ledger proxy benchmark ({secs} s per measurement, 2 cores shared by load, agent and upstream)");
    println!("\n[agent at rest]  {idle_wakeups:.1} context switches/s, CPU {:.2} % of a core", idle_cpu * 100.0);
    latency([up_port, relay_port, bare_port, agent_port], secs).await;
    // Memory at that steady rate, before any burst: what a sidecar holds in normal use.
    let rss_steady = rss_mib(pid);

    println!("\n[echo-speed MCP upstream, saturation: 32 keep-alive connections, closed loop]");
    let me = std::process::id();
    let hops = [
        Hop { port: up_port, pid: None, admin: None },
        Hop { port: relay_port, pid: Some(relay_pid), admin: None },
        Hop { port: bare_port, pid: Some(bare_pid), admin: None },
        Hop { port: agent_port, pid: Some(pid), admin: Some(agent_admin) },
    ];
    let steal = cpu_steal_ticks();
    let measured = saturation(&hops, [me, up_pid], secs).await;
    report(&measured, "(target >= 70 %)");
    print_steal(steal);
    // When the cores are the limit, a hop of h µs beside ends that spend e µs per request
    // runs at e / (e + h) of direct: 70 % leaves a hop 3/7 of e.
    let ends = measured[0].per_request(measured[0].ends);
    println!(
        "  load generator and upstream CPU per request {ends:.1} µs direct: 70 % of direct on these cores leaves any hop {:.1} µs",
        ends * 3.0 / 7.0
    );
    let rss_load = rss_mib(pid);
    let after = drained(agent_admin).await;
    println!(
        "  agent records: {:.0} exported, {:.0} dropped (queue full / backlog) during saturation",
        metric_sum(&after, "mcp_ledger_records_exported_total"),
        metric_sum(&after, "mcp_ledger_records_dropped_total")
    );

    println!(
        "\n[agent memory]  RSS idle {rss_idle:.1} MiB, steady at 1000 req/s {rss_steady:.1} MiB (target < 20 MiB), \
         after saturation {rss_load:.1} MiB (what the bursts left: the queue of captured messages may have filled, and freed memory stays with the process)"
    );
    drop((agent_proc, bare_proc, relay_proc));
    one_core_each(&work, secs).await;

    let python = root().join(".venv/bin/python");
    if python.exists() {
        let sdk_port = free_port();
        let _sdk = Proc(
            Command::new(&python)
                .arg(root().join("tests/peers/mcp_server.py"))
                .args(["--transport", "streamable-http", "--json-response", "--port", &sdk_port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(sdk_port);
        let (_agent2, agent2_port, _) = agent(sdk_port, &work);
        println!("\n[real Python SDK server (mcp 2.3.0, stateless tools/call echo), 8 connections, closed loop]");
        saturate(sdk_port, "/mcp", 4, 0.5).await;
        let d = saturate(sdk_port, "/mcp", 8, secs).await;
        let a = saturate(agent2_port, "/mcp", 8, secs).await;
        println!("  direct        {d:>10.0} req/s");
        println!("  via agent     {a:>10.0} req/s");
        println!("  ratio         {:>10.1} %", a / d * 100.0);
        let ld = fixed_rate(sdk_port, "/mcp", 100, 4, secs).await;
        let la = fixed_rate(agent2_port, "/mcp", 100, 4, secs).await;
        println!(
            "  at 100 req/s  direct p50 {:.0} µs p99 {:.0} µs | via agent p50 {:.0} µs p99 {:.0} µs",
            pct(&ld, 0.5),
            pct(&ld, 0.99),
            pct(&la, 0.5),
            pct(&la, 0.99)
        );
    } else {
        println!("\n[real SDK server] skipped: .venv missing (run `make peers`)");
    }
    instructions(up_port, &work).await;
    clean_up(&work);
}

/// p50 and p99 at 1000 requests/s on each of `ports` (direct, TCP relay, bare proxy,
/// agent), in alternating rounds.
async fn latency(ports: [u16; 4], secs: f64) {
    println!("\n[echo-speed MCP upstream, latency at 1000 req/s: 16 connections, open loop]");
    let steal = cpu_steal_ticks();
    // Warm up every path (connections, pools) at a gentle rate.
    for port in ports {
        fixed_rate(port, "/mcp", 500, 16, 0.5).await;
    }
    // Alternate short rounds, so a burst of load from the machine's other tenants falls on
    // every path rather than on whichever was being measured then.
    let mut lat: [Vec<f64>; 4] = Default::default();
    let round = secs / LATENCY_ROUNDS as f64;
    for _ in 0..LATENCY_ROUNDS {
        for (l, port) in lat.iter_mut().zip(ports) {
            l.extend(fixed_rate(port, "/mcp", 1000, 16, round).await);
        }
    }
    for l in &mut lat {
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let [ld, lr, lb, la] = &lat;
    let line = |name: &str, l: &[f64]| {
        println!("  {name:<13} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} requests)", pct(l, 0.5), pct(l, 0.99), l.len())
    };
    line("direct", ld);
    line("tcp relay", lr);
    line("bare proxy", lb);
    line("via agent", la);
    println!(
        "  added         p50 {:>8.1} µs   p99 {:>8.1} µs   (target: p99 added <= 200 µs)",
        pct(la, 0.5) - pct(ld, 0.5),
        pct(la, 0.99) - pct(ld, 0.99)
    );
    let hop = |name: &str, l: &[f64]| {
        println!(
            "  of which {name} p50 {:.1} µs, p99 {:.1} µs",
            pct(l, 0.5) - pct(ld, 0.5),
            pct(l, 0.99) - pct(ld, 0.99)
        )
    };
    hop("a bare hyper hop (the same server and client, forwarding only)", lb);
    hop("a TCP relay (bytes copied, nothing parsed)", lr);
    print_steal(steal);
}

/// Removes the work directory, or with BENCH_KEEP keeps it (the callgrind outputs, for
/// callgrind_annotate) and says where it is.
fn clean_up(work: &std::path::Path) {
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("\nkept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(work);
    }
}
