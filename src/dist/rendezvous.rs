//! The rendezvous of a multi-process run, over plain TCP: rank 0 listens on
//! `MASTER_ADDR:MASTER_PORT`, every other rank connects (retrying until a
//! deadline, since launchers start ranks in any order) and sends its rank
//! and world size; once all have joined, rank 0 sends each the same bytes
//! (the NCCL unique id, for the communicator). The connections stay open
//! as a control channel: a barrier, and a failure on one rank reported to
//! every rank at the next barrier, so a crash stops the job instead of
//! leaving the other ranks blocked in a collective.
//!
//! Wire format, little-endian: hello `MTDR rank:u32 world:u32`; reply
//! `0 world:u32 len:u32 bytes` or `1 len:u32 message`; control frames `B`
//! (barrier) and `F rank:u32 len:u32 message` (a rank failed).

use super::DistEnv;
use crate::{Error, Result};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"MTDR";
/// Largest payload or message accepted, so a stray connection cannot make a
/// rank allocate gigabytes.
const MAX_FRAME: usize = 1 << 20;

pub(super) fn io_err(what: &str, e: io::Error) -> Error {
    Error::Dist(format!("{what}: {e}"))
}

fn read_u32(s: &mut TcpStream) -> io::Result<u32> {
    let mut b = [0; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_blob(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = read_u32(s)? as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut v = vec![0; len];
    s.read_exact(&mut v)?;
    Ok(v)
}

pub(super) fn write_blob(s: &mut TcpStream, head: &[u8], blob: &[u8]) -> io::Result<()> {
    let mut m = head.to_vec();
    m.extend((blob.len() as u32).to_le_bytes());
    m.extend(blob);
    s.write_all(&m)
}

fn failure_frame(rank: usize, msg: &str) -> Vec<u8> {
    let mut head = vec![b'F'];
    head.extend((rank as u32).to_le_bytes());
    head.extend((msg.len() as u32).to_le_bytes());
    head.extend(msg.as_bytes());
    head
}

/// This rank's end of the control channel.
#[derive(Debug)]
pub struct Control {
    pub rank: usize,
    pub world_size: usize,
    /// Rank 0: a stream per other rank (index r - 1); others: one to rank 0.
    pub(super) streams: Vec<TcpStream>,
}

impl Control {
    /// Waits until every rank has reached the barrier, or fails with the
    /// first failure a rank reported ("rank N failed: ...") or a timeout.
    pub fn barrier(&mut self, timeout: Duration) -> Result<()> {
        for s in &mut self.streams {
            s.set_read_timeout(Some(timeout))
                .map_err(|e| io_err("barrier", e))?;
        }
        if self.rank != 0 {
            let s = &mut self.streams[0];
            s.write_all(b"B")
                .map_err(|e| io_err("barrier: rank 0 is gone", e))?;
            return read_control(s).map_err(|e| match e {
                Some(failure) => failure,
                None => Error::Dist(format!("barrier: no word from rank 0 within {timeout:?}")),
            });
        }
        for r in 1..self.world_size {
            if let Err(e) = read_control(&mut self.streams[r - 1]) {
                let e = e.unwrap_or_else(|| {
                    Error::Dist(format!(
                        "rank {r} did not reach the barrier within {timeout:?}"
                    ))
                });
                self.fail(&e.to_string());
                return Err(e);
            }
        }
        for s in &mut self.streams {
            s.write_all(b"B")
                .map_err(|e| io_err("barrier release", e))?;
        }
        Ok(())
    }

    /// Reports that this rank failed: rank 0 tells every rank at once,
    /// another rank tells rank 0, which passes it on at its next barrier.
    /// Best effort: a peer already gone is not an error on top of the first.
    pub fn fail(&mut self, msg: &str) {
        let frame = failure_frame(self.rank, msg);
        for s in &mut self.streams {
            let _ = s.write_all(&frame);
        }
    }
}

/// A frame on the control channel other than a failure report.
pub(super) enum Frame {
    Barrier,
    /// A collective's bytes (`D len:u32 bytes`, at most `max_data`).
    Data(Vec<u8>),
}

/// Reads one frame: `Err(Some)` for a reported failure or a malformed
/// frame, `Err(None)` when the peer timed out or went away.
pub(super) fn read_frame(
    s: &mut TcpStream,
    max_data: usize,
) -> std::result::Result<Frame, Option<Error>> {
    let mut kind = [0u8];
    s.read_exact(&mut kind).map_err(|_| None)?;
    match kind[0] {
        b'B' => Ok(Frame::Barrier),
        b'D' => {
            let len = read_u32(s).map_err(|_| None)? as usize;
            if len > max_data {
                return Err(Some(Error::Dist(format!(
                    "control channel: a collective of {len} bytes where at most {max_data} fit"
                ))));
            }
            let mut v = vec![0; len];
            s.read_exact(&mut v).map_err(|_| None)?;
            Ok(Frame::Data(v))
        }
        b'F' => {
            let rank = read_u32(s).map_err(|_| None)?;
            let msg = read_blob(s).map_err(|_| None)?;
            Err(Some(Error::Dist(format!(
                "rank {rank} failed: {}",
                String::from_utf8_lossy(&msg)
            ))))
        }
        k => Err(Some(Error::Dist(format!(
            "control channel: unknown frame {k:#x}"
        )))),
    }
}

/// One barrier frame (see [`read_frame`]).
fn read_control(s: &mut TcpStream) -> std::result::Result<(), Option<Error>> {
    match read_frame(s, 0)? {
        Frame::Barrier => Ok(()),
        Frame::Data(_) => Err(Some(Error::Dist(
            "control channel: collective data where a barrier was expected".into(),
        ))),
    }
}

/// Rank 0: waits on `listener` for ranks 1..world_size, checks them, sends
/// each `payload`. Every error is also sent to the ranks that joined.
pub fn host(
    listener: TcpListener,
    world_size: usize,
    payload: &[u8],
    timeout: Duration,
) -> Result<Control> {
    let deadline = Instant::now() + timeout;
    let here = listener
        .local_addr()
        .map_err(|e| io_err("rendezvous listener", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err("rendezvous listener", e))?;
    let mut joined: Vec<Option<(TcpStream, SocketAddr)>> = (0..world_size).map(|_| None).collect();
    let refuse = |joined: &mut Vec<Option<(TcpStream, SocketAddr)>>, msg: String| {
        for (s, _) in joined.iter_mut().flatten() {
            let _ = write_blob(s, &[1], msg.as_bytes());
        }
        Error::Dist(msg)
    };
    while joined.iter().skip(1).any(Option::is_none) {
        let (mut s, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<usize> =
                        (1..world_size).filter(|&r| joined[r].is_none()).collect();
                    let msg = format!("ranks {missing:?} did not join the rendezvous at {here} within {timeout:?}");
                    return Err(refuse(&mut joined, msg));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(io_err("rendezvous accept", e)),
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let hello = s
            .set_nonblocking(false)
            .and_then(|_| s.set_read_timeout(Some(left)))
            .and_then(|_| {
                let mut magic = [0; 4];
                s.read_exact(&mut magic)?;
                Ok((
                    magic,
                    read_u32(&mut s)? as usize,
                    read_u32(&mut s)? as usize,
                ))
            });
        let (rank, world) = match hello {
            Ok((m, rank, world)) if &m == MAGIC => (rank, world),
            _ => continue, // Not a rank of this job: ignore the connection.
        };
        let problem = if world != world_size {
            Some(format!(
                "rank {rank} at {peer} has WORLD_SIZE={world}, rank 0 has WORLD_SIZE={world_size}"
            ))
        } else if rank == 0 || rank >= world_size {
            Some(format!(
                "a process at {peer} claims RANK={rank}; ranks 1..{world_size} join rank 0"
            ))
        } else {
            joined[rank]
                .as_ref()
                .map(|(_, first)| format!("rank {rank} joined twice: from {first} and from {peer}"))
        };
        if let Some(msg) = problem {
            let _ = write_blob(&mut s, &[1], msg.as_bytes());
            return Err(refuse(&mut joined, msg));
        }
        joined[rank] = Some((s, peer));
    }
    let mut head = vec![0];
    head.extend((world_size as u32).to_le_bytes());
    let mut streams = Vec::with_capacity(world_size.saturating_sub(1));
    for (r, (mut s, _)) in joined
        .into_iter()
        .enumerate()
        .skip(1)
        .filter_map(|(r, j)| j.map(|j| (r, j)))
    {
        write_blob(&mut s, &head, payload)
            .map_err(|e| io_err(&format!("sending rank {r} the payload"), e))?;
        streams.push(s);
    }
    Ok(Control {
        rank: 0,
        world_size,
        streams,
    })
}

/// Ranks 1..world_size: connects to rank 0 at `addr` (retrying until
/// `timeout`), and returns the payload rank 0 sent with the control channel.
pub fn join(
    addr: &str,
    rank: usize,
    world_size: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Control)> {
    let deadline = Instant::now() + timeout;
    let mut s = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tried = addr
            .to_socket_addrs()
            .and_then(|mut a| {
                a.next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .and_then(|a| TcpStream::connect_timeout(&a, left.max(Duration::from_millis(10))));
        match tried {
            Ok(s) => break s,
            Err(e) if left.is_zero() => {
                return Err(Error::Dist(format!(
                    "rank {rank}: could not reach rank 0 at {addr} within {timeout:?}: {e}"
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let ctx = |e| io_err(&format!("rank {rank}: rendezvous with rank 0 at {addr}"), e);
    let mut hello = MAGIC.to_vec();
    hello.extend((rank as u32).to_le_bytes());
    hello.extend((world_size as u32).to_le_bytes());
    s.write_all(&hello).map_err(ctx)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    s.set_read_timeout(Some(left)).map_err(ctx)?;
    let mut status = [0u8];
    s.read_exact(&mut status).map_err(ctx)?;
    if status[0] != 0 {
        let msg = read_blob(&mut s).map_err(ctx)?;
        return Err(Error::Dist(String::from_utf8_lossy(&msg).into_owned()));
    }
    let world = read_u32(&mut s).map_err(ctx)? as usize;
    if world != world_size {
        return Err(Error::Dist(format!(
            "rank {rank} has WORLD_SIZE={world_size}, rank 0 has WORLD_SIZE={world}"
        )));
    }
    let payload = read_blob(&mut s).map_err(ctx)?;
    Ok((
        payload,
        Control {
            rank,
            world_size,
            streams: vec![s],
        },
    ))
}

/// The rendezvous `env` describes: rank 0 listens on
/// `MASTER_ADDR:MASTER_PORT` and sends what `payload` makes (called on rank 0
/// only); the other ranks join. Every rank returns the same bytes.
pub fn rendezvous(
    env: &DistEnv,
    payload: impl FnOnce() -> Result<Vec<u8>>,
    timeout: Duration,
) -> Result<(Vec<u8>, Control)> {
    let addr = if env.master_addr.contains(':') && !env.master_addr.starts_with('[') {
        format!("[{}]:{}", env.master_addr, env.master_port) // a bare IPv6 address
    } else {
        format!("{}:{}", env.master_addr, env.master_port)
    };
    if env.rank != 0 {
        return join(&addr, env.rank, env.world_size, timeout);
    }
    let listener = TcpListener::bind(&addr).map_err(|e| {
        io_err(
            &format!("rank 0: listening on MASTER_ADDR:MASTER_PORT {addr}"),
            e,
        )
    })?;
    let bytes = payload()?;
    let control = host(listener, env.world_size, &bytes, timeout)?;
    Ok((bytes, control))
}

#[cfg(test)]
#[path = "rendezvous_tests.rs"]
mod tests;
