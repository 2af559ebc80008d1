//! The torchrun-compatible environment: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`. Parsed once at start so
//! a bad launch fails before any data or model is touched, with an error
//! naming the variable and the value it held.

use crate::{Error, Result};
use std::fmt;

/// The variables read, in the order errors and summaries list them.
pub const VARS: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// One process of a multi-process run (a group of one under torchrun).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    /// Index on this node: picks the GPU.
    pub local_rank: usize,
    /// Processes on this node, when the launcher says.
    pub local_world_size: Option<usize>,
    /// Where rank 0 listens for the rendezvous.
    pub master_addr: String,
    pub master_port: u16,
}

impl DistEnv {
    /// Reads the process environment; `None` means a single process (no
    /// variable set, or `WORLD_SIZE=1`).
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`DistEnv::from_env`], with the variables looked up by `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let seen = describe_vars(&get);
        if seen.is_empty() {
            return Ok(None);
        }
        let bad = |k: &str, v: &str, why: &str| {
            Error::Dist(format!("{k}={v:?}: {why} (environment: {seen})"))
        };
        let number = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad(k, &v, "not a non-negative integer"))
                })
                .transpose()
        };
        let required = |k: &str| -> Result<usize> {
            number(k)?.ok_or_else(|| Error::Dist(format!("{k} is not set (environment: {seen})")))
        };
        let world_size = required("WORLD_SIZE")?;
        if world_size == 0 {
            return Err(bad("WORLD_SIZE", "0", "must be >= 1"));
        }
        let rank = required("RANK")?;
        if rank >= world_size {
            return Err(bad(
                "RANK",
                &rank.to_string(),
                &format!("must be < WORLD_SIZE={world_size}"),
            ));
        }
        let local_world_size = number("LOCAL_WORLD_SIZE")?;
        if let Some(l) = local_world_size {
            if l == 0 || l > world_size {
                return Err(bad(
                    "LOCAL_WORLD_SIZE",
                    &l.to_string(),
                    &format!("must be in 1..=WORLD_SIZE={world_size}"),
                ));
            }
        }
        let local_rank = required("LOCAL_RANK")?;
        let local_limit = local_world_size.unwrap_or(world_size);
        if local_rank >= local_limit || local_rank > rank {
            return Err(bad(
                "LOCAL_RANK",
                &local_rank.to_string(),
                &format!("must be < {local_limit} and <= RANK={rank}"),
            ));
        }
        // torchrun with one process still names a rendezvous: that is a
        // group of one (every collective a no-op, NCCL on a GPU); without
        // one, WORLD_SIZE=1 is a plain single process.
        if world_size == 1 && get("MASTER_ADDR").is_none() {
            return Ok(None);
        }
        let master_addr = get("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| Error::Dist(format!("MASTER_ADDR is not set (environment: {seen})")))?;
        let port = get("MASTER_PORT")
            .ok_or_else(|| Error::Dist(format!("MASTER_PORT is not set (environment: {seen})")))?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("MASTER_PORT", &port, "not a port number in 1..=65535")),
        };
        Ok(Some(DistEnv {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr: master_addr.trim().to_string(),
            master_port,
        }))
    }
}

impl fmt::Display for DistEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rank {} of {} (local rank {}), rendezvous at {}:{}",
            self.rank, self.world_size, self.local_rank, self.master_addr, self.master_port
        )
    }
}

/// "RANK=1 WORLD_SIZE=2 ..." for the variables that are set (empty if none).
pub fn describe_vars(get: impl Fn(&str) -> Option<String>) -> String {
    VARS.iter()
        .filter_map(|k| get(k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        DistEnv::from_vars(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    const TWO: [(&str, &str); 5] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    fn with(key: &str, value: &str) -> Vec<(&'static str, String)> {
        TWO.iter()
            .map(|(k, v)| (*k, if *k == key { value } else { v }.to_string()))
            .collect()
    }

    fn err_of(vars: Vec<(&str, String)>) -> String {
        let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn absent_or_world_of_one_is_a_single_process() {
        assert_eq!(parse(&[]).unwrap(), None);
        let one = [("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")];
        assert_eq!(parse(&one).unwrap(), None);
    }

    #[test]
    fn a_world_of_one_with_a_rendezvous_is_a_group_of_one() {
        let vars = [
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        let env = parse(&vars).unwrap().unwrap();
        assert_eq!((env.rank, env.world_size), (0, 1));
    }

    #[test]
    fn torchrun_variables_parse() {
        let env = parse(&TWO).unwrap().unwrap();
        assert_eq!(
            env,
            DistEnv {
                rank: 1,
                world_size: 2,
                local_rank: 1,
                local_world_size: None,
                master_addr: "10.0.0.1".into(),
                master_port: 29500,
            }
        );
        assert_eq!(
            env.to_string(),
            "rank 1 of 2 (local rank 1), rendezvous at 10.0.0.1:29500"
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        let e = err_of(with("RANK", "2"));
        assert!(
            e.contains("RANK=\"2\"") && e.contains("WORLD_SIZE=2"),
            "{e}"
        );
        let e = err_of(with("MASTER_PORT", "http"));
        assert!(e.contains("MASTER_PORT=\"http\""), "{e}");
        let e = err_of(with("MASTER_PORT", "70000"));
        assert!(e.contains("MASTER_PORT=\"70000\""), "{e}");
        let e = err_of(with("WORLD_SIZE", "-1"));
        assert!(
            e.contains("WORLD_SIZE=\"-1\"") && e.contains("integer"),
            "{e}"
        );
        let e = err_of(with("LOCAL_RANK", "5"));
        assert!(e.contains("LOCAL_RANK=\"5\""), "{e}");
        let mut lws = with("RANK", "1");
        lws.push(("LOCAL_WORLD_SIZE", "1".into()));
        let e = err_of(lws);
        assert!(e.contains("LOCAL_RANK=\"1\"") && e.contains("< 1"), "{e}");
    }

    #[test]
    fn a_missing_variable_is_named_with_what_was_seen() {
        let e = parse(&[("RANK", "0")]).unwrap_err().to_string();
        assert!(
            e.contains("WORLD_SIZE is not set") && e.contains("RANK=0"),
            "{e}"
        );
        let no_addr: Vec<(&str, &str)> = TWO
            .iter()
            .copied()
            .filter(|(k, _)| *k != "MASTER_ADDR")
            .collect();
        let e = parse(&no_addr).unwrap_err().to_string();
        assert!(e.contains("MASTER_ADDR is not set"), "{e}");
    }
}
