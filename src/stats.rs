//! Statistics over seeds: the spread of a metric across independent runs of
//! one configuration, and whether two configurations' means differ by more
//! than that spread explains (Welch's t interval, which does not assume the
//! two configurations vary equally).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// One metric over the runs of a seed set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// One value per run, in the seed set's order.
    pub values: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation (divisor n - 1); None for a single run.
    pub sd: Option<f64>,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; an empty or non-finite list is an error.
    pub fn of(values: &[f64]) -> Result<Spread> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "a spread needs one or more finite values, got {values:?}"
            )));
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.len() > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1.0)).sqrt()
        });
        Ok(Spread {
            values: values.to_vec(),
            mean,
            sd,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// "1.7300 ± 0.1100 (n=3)", or "1.7300 (n=1)".
    pub fn display(&self) -> String {
        match self.sd {
            Some(sd) => format!("{:.4} ± {sd:.4} (n={})", self.mean, self.values.len()),
            None => format!("{:.4} (n=1)", self.mean),
        }
    }
}

/// The difference of two means, `b - a`, with its confidence interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Coverage of the interval, e.g. 0.95.
    pub level: f64,
}

impl Difference {
    /// False when the interval covers zero: the data do not tell the two
    /// configurations apart at this level.
    pub fn distinguishable(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// Welch's t interval for `mean(b) - mean(a)` at coverage `level`. Each
/// side needs at least two values (a spread cannot be estimated from one).
pub fn welch(a: &[f64], b: &[f64], level: f64) -> Result<Difference> {
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::Config(format!(
            "confidence level {level}: must lie in (0, 1)"
        )));
    }
    let (sa, sb) = (Spread::of(a)?, Spread::of(b)?);
    let (Some(da), Some(db)) = (sa.sd, sb.sd) else {
        return Err(Error::Config(format!(
            "comparing means needs at least 2 runs on each side (got {} and {}): run more seeds",
            a.len(),
            b.len()
        )));
    };
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (da * da / na, db * db / nb);
    let se = (va + vb).sqrt();
    let diff = sb.mean - sa.mean;
    // Both sides constant: the Satterthwaite formula is 0/0; the pooled
    // count is the natural limit and the interval is the point itself.
    let df = if se > 0.0 {
        (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0))
    } else {
        na + nb - 2.0
    };
    let t = StudentsT::new(0.0, 1.0, df)
        .map_err(|e| Error::Config(format!("Student's t with {df} degrees of freedom: {e}")))?
        .inverse_cdf(0.5 + level / 2.0);
    Ok(Difference {
        diff,
        lo: diff - t * se,
        hi: diff + t * se,
        df,
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_by_hand() {
        // Mean 2, squared deviations 1 + 0 + 1 + 4 + ... : values 1, 2, 3, 2, 2.
        let s = Spread::of(&[1.0, 2.0, 3.0, 2.0, 2.0]).unwrap();
        assert_eq!(s.mean, 2.0);
        assert!((s.sd.unwrap() - (2.0f64 / 4.0).sqrt()).abs() < 1e-15);
        assert_eq!((s.min, s.max), (1.0, 3.0));
        assert_eq!(Spread::of(&[4.0]).unwrap().sd, None);
        assert!(Spread::of(&[]).is_err());
        assert!(Spread::of(&[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn welch_by_hand() {
        // a: mean 1, var 1 (n 3) -> 1/3; b: mean 3, var 4 (n 3) -> 4/3.
        // se = sqrt(5/3); df = (5/3)^2 / ((1/9 + 16/9) / 2) = 50/17.
        let d = welch(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0], 0.95).unwrap();
        assert_eq!(d.diff, 2.0);
        assert!((d.df - 50.0 / 17.0).abs() < 1e-12, "{}", d.df);
        // t quantile 0.975 at df 50/17 (= 2.941...) lies between df 2 (4.303)
        // and df 3 (3.182); the half-width is t * sqrt(5/3).
        let t = (d.hi - d.diff) / (5.0f64 / 3.0).sqrt();
        assert!(t > 3.182 && t < 4.303, "{t}");
        assert!((d.lo + d.hi - 4.0).abs() < 1e-12);
        // The interval covers zero: not distinguishable.
        assert!(d.lo < 0.0 && !d.distinguishable());
        // Far apart and tight: distinguishable.
        let d = welch(&[1.0, 1.1, 0.9], &[2.0, 2.1, 1.9], 0.95).unwrap();
        assert!(d.distinguishable() && d.lo > 0.5);
    }

    #[test]
    fn welch_matches_the_t_table_with_equal_sizes_and_variances() {
        // Equal n and variance: df = 2n - 2 = 4, t(0.975, 4) = 2.7764.
        let d = welch(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0], 0.95).unwrap();
        assert!((d.df - 4.0).abs() < 1e-12);
        let se = (2.0f64 / 3.0).sqrt();
        assert!(((d.hi - d.diff) / se - 2.7764).abs() < 1e-4);
    }

    #[test]
    fn welch_refuses_what_it_cannot_estimate() {
        assert!(welch(&[1.0], &[1.0, 2.0], 0.95).is_err());
        assert!(welch(&[1.0, 2.0], &[1.0, 2.0], 1.5).is_err());
        let same = welch(&[2.0, 2.0], &[2.0, 2.0], 0.95).unwrap();
        assert_eq!((same.lo, same.hi), (0.0, 0.0));
        assert!(!same.distinguishable());
    }
}
