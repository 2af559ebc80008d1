//! Rendezvous tests: ranks as threads on 127.0.0.1.

use super::*;
use std::thread;

const T: Duration = Duration::from_secs(10);

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// A joining rank's thread: the payload and its control channel.
type Joiner = thread::JoinHandle<Result<(Vec<u8>, Control)>>;

/// Starts `joiners` as (rank, claimed world size) threads against `addr`.
fn spawn_joiners(addr: &str, joiners: &[(usize, usize)], timeout: Duration) -> Vec<Joiner> {
    joiners
        .iter()
        .map(|&(rank, world)| {
            let addr = addr.to_string();
            thread::spawn(move || join(&addr, rank, world, timeout))
        })
        .collect()
}

/// The error of the one joiner in `ranks`.
fn only_error(ranks: Vec<Joiner>) -> String {
    let [rank]: [Joiner; 1] = ranks.try_into().expect("one joiner");
    rank.join().unwrap().unwrap_err().to_string()
}

#[test]
fn every_rank_gets_the_payload_and_barriers_pass() {
    let (l, addr) = listener();
    let payload: Vec<u8> = (0..128u8).collect();
    let ranks = spawn_joiners(&addr, &[(3, 4), (1, 4), (2, 4)], T);
    let mut host = host(l, 4, &payload, T).unwrap();
    let mut controls: Vec<Control> = ranks
        .into_iter()
        .map(|h| {
            let (got, c) = h.join().unwrap().unwrap();
            assert_eq!(got, payload);
            c
        })
        .collect();
    controls.sort_by_key(|c| c.rank);
    assert_eq!(
        controls.iter().map(|c| c.rank).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Two rounds of barriers: the channel survives its first use.
    for _ in 0..2 {
        let waiting: Vec<_> = controls
            .drain(..)
            .map(|mut c| thread::spawn(move || c.barrier(T).map(|_| c)))
            .collect();
        host.barrier(T).unwrap();
        controls = waiting
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
    }
}

#[test]
fn a_rank_failure_reaches_every_rank_at_the_barrier() {
    let (l, addr) = listener();
    let ranks = spawn_joiners(&addr, &[(1, 3), (2, 3)], T);
    let mut host = host(l, 3, b"id", T).unwrap();
    let mut controls: Vec<Control> = ranks
        .into_iter()
        .map(|h| h.join().unwrap().unwrap().1)
        .collect();
    controls.sort_by_key(|c| c.rank);
    let mut two = controls.pop().unwrap();
    let mut one = controls.pop().unwrap();
    two.fail("CUDA out of memory");
    let waiting = thread::spawn(move || one.barrier(T));
    let e = host.barrier(T).unwrap_err().to_string();
    assert!(e.contains("rank 2 failed: CUDA out of memory"), "{e}");
    let e = waiting.join().unwrap().unwrap_err().to_string();
    assert!(e.contains("rank 2 failed: CUDA out of memory"), "{e}");
}

#[test]
fn a_missing_rank_times_out_naming_it() {
    let (l, addr) = listener();
    let ranks = spawn_joiners(&addr, &[(2, 4)], T);
    let e = host(l, 4, b"id", Duration::from_millis(600))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ranks [1, 3] did not join"), "{e}");
    // The rank that joined hears why instead of waiting forever.
    let e = only_error(ranks);
    assert!(e.contains("ranks [1, 3] did not join"), "{e}");
}

#[test]
fn a_joiner_with_no_host_gives_up_naming_the_address() {
    let (l, addr) = listener();
    drop(l);
    let e = join(&addr, 1, 2, Duration::from_millis(300))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("rank 1") && e.contains(&addr), "{e}");
}

#[test]
fn a_joiner_retries_until_rank_0_listens() {
    let (l, addr) = listener();
    drop(l);
    let ranks = spawn_joiners(&addr, &[(1, 2)], T);
    thread::sleep(Duration::from_millis(300));
    let l = TcpListener::bind(&addr).unwrap();
    host(l, 2, b"late", T).unwrap();
    assert_eq!(
        ranks.into_iter().next().unwrap().join().unwrap().unwrap().0,
        b"late"
    );
}

#[test]
fn a_world_size_disagreement_is_refused_naming_both() {
    let (l, addr) = listener();
    let ranks = spawn_joiners(&addr, &[(1, 3)], T);
    let e = host(l, 2, b"id", T).unwrap_err().to_string();
    assert!(
        e.contains("WORLD_SIZE=3") && e.contains("WORLD_SIZE=2"),
        "{e}"
    );
    let e = only_error(ranks);
    assert!(
        e.contains("WORLD_SIZE=3") && e.contains("WORLD_SIZE=2"),
        "{e}"
    );
}

#[test]
fn a_duplicate_rank_is_refused_naming_both_peers() {
    let (l, addr) = listener();
    let ranks = spawn_joiners(&addr, &[(1, 3), (1, 3)], T);
    let e = host(l, 3, b"id", T).unwrap_err().to_string();
    assert!(e.contains("rank 1 joined twice: from 127.0.0.1:"), "{e}");
    for h in ranks {
        let e = h.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("rank 1 joined twice"), "{e}");
    }
}

#[test]
fn ranks_meet_where_the_environment_says() {
    let (l, addr) = listener();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let env = |rank| DistEnv {
        rank,
        world_size: 3,
        local_rank: rank,
        local_world_size: Some(3),
        master_addr: "127.0.0.1".into(),
        master_port: port,
    };
    let ranks: Vec<_> = [2, 0, 1]
        .into_iter()
        .map(|r| {
            let env = env(r);
            thread::spawn(move || rendezvous(&env, || Ok(vec![7; 128]), T))
        })
        .collect();
    for h in ranks {
        let (bytes, control) = h.join().unwrap().unwrap();
        assert_eq!(bytes, vec![7; 128], "rank {}", control.rank);
    }
    let taken = TcpListener::bind(&addr).unwrap();
    let e = rendezvous(&env(0), || Ok(vec![]), T)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("MASTER_ADDR:MASTER_PORT") && e.contains(&addr),
        "{e}"
    );
    drop(taken);
}
