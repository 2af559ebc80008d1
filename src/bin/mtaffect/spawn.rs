//! `mtaffect train --nproc-per-node N`: one machine, one process per GPU (or
//! N CPU processes), each this same executable with the same arguments and
//! torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
//! MASTER_ADDR=127.0.0.1, MASTER_PORT a free port). The launcher waits for
//! all; when one fails it gives the others a moment to stop with that
//! rank's message (the control channel tells them), then ends any left,
//! and reports the first rank that failed.

use mtaffect::{Error, Result};
use std::ffi::OsString;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long the other ranks get to stop by themselves after one failed.
const GRACE: Duration = Duration::from_secs(30);

/// Runs `n` ranks of this command (its arguments without `--nproc-per-node`).
pub fn spawn_ranks(n: usize) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::Dist(format!("own executable: {e}")))?;
    let args = without_nproc(std::env::args_os().skip(1).collect());
    // A port the OS says is free now; rank 0 binds it moments later.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Dist(format!("finding a free port: {e}")))?
        .port();
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(n);
    for rank in 0..n {
        let child = Command::new(&exe)
            .args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                stop(&mut children);
                return Err(Error::Dist(format!("starting rank {rank}: {e}")));
            }
        }
    }
    wait_all(children)
}

/// Waits for every rank; the first failure is the error.
fn wait_all(mut running: Vec<(usize, Child)>) -> Result<()> {
    let mut failed: Option<(usize, ExitStatus, Instant)> = None;
    while !running.is_empty() {
        let mut i = 0;
        while i < running.len() {
            match running[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (rank, _) = running.remove(i);
                    if !status.success() && failed.is_none() {
                        failed = Some((rank, status, Instant::now()));
                    }
                }
                Ok(None) => i += 1,
                Err(e) => return Err(Error::Dist(format!("waiting for a rank: {e}"))),
            }
        }
        if failed.is_some_and(|(_, _, at)| at.elapsed() > GRACE) {
            stop(&mut running);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed {
        None => Ok(()),
        Some((rank, status, _)) => Err(Error::Dist(format!(
            "rank {rank} failed ({status}; its message is above); the other ranks were stopped"
        ))),
    }
}

/// Ends the ranks still running (after a failure).
fn stop(running: &mut Vec<(usize, Child)>) {
    for (rank, c) in running.iter_mut() {
        if c.kill().is_ok() {
            eprintln!("stopped rank {rank}");
        }
        let _ = c.wait();
    }
    running.clear();
}

/// `args` without `--nproc-per-node N` / `--nproc-per-node=N`.
fn without_nproc(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match a.to_str() {
            Some("--nproc-per-node") => skip_value = true,
            Some(s) if s.starts_with("--nproc-per-node=") => {}
            _ => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_flag_is_removed_in_both_spellings() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            without_nproc(args(&["train", "--nproc-per-node", "2", "--quiet"])),
            args(&["train", "--quiet"])
        );
        assert_eq!(
            without_nproc(args(&["train", "--nproc-per-node=4", "--set", "a=1"])),
            args(&["train", "--set", "a=1"])
        );
    }
}
