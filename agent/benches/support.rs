//! What the benches that run processes share (`#[path]`-included: each bench is its own
//! crate).

#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `taskset -c <cpus>` (util-linux): the wrapper that runs a command on those CPUs only.
pub fn on_cpus(cpus: &str) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus]);
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port} after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `kB` field of /proc/<pid>/status (`VmRSS:`, `VmHWM:`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a /proc `stat` file, in seconds (clock ticks of 1/100 s).
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds the process's threads named `comm` have used.
pub fn thread_cpu_seconds(pid: u32, comm: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .map(|t| stat_cpu_seconds(&t.path().join("stat").display().to_string()))
        .sum()
}

/// Context switches (voluntary and not) of all the process's threads so far: each one is
/// a thread going to sleep or being preempted, so a quiet process has few.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The machine's CPU time so far, from the `cpu` line of /proc/stat: (steal, all), in
/// clock ticks. Steal is time the hypervisor gave this machine's virtual CPUs to another
/// guest; while it is high, a timing measures the neighbours as much as the code.
pub fn cpu_steal_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    (ticks.get(7).copied().unwrap_or(0), ticks.iter().sum())
}

/// Steal as a percentage of all CPU time since `before` (a [`cpu_steal_ticks`] reading).
pub fn steal_percent_since(before: (u64, u64)) -> f64 {
    let (steal, all) = cpu_steal_ticks();
    let all = all.saturating_sub(before.1);
    if all == 0 { 0.0 } else { steal.saturating_sub(before.0) as f64 / all as f64 * 100.0 }
}
