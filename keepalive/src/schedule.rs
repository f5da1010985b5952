//! Reloads on a schedule (pm2's `cron_restart`, the keepalive way): at each
//! time a cron pattern names, a rolling reload, each new worker ready
//! before the old one stops; never a stop-and-start.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A cron pattern, read in local time: five fields (`0 3 * * *`, 03:00
/// every day), or six with seconds first (`*/30 * * * * *`).
///
/// ```
/// use keepalive::Schedule;
///
/// let nightly: Schedule = "0 3 * * *".parse()?;
/// assert_eq!(nightly.to_string(), "0 3 * * *");
/// assert!("0 25 * * *".parse::<Schedule>().is_err()); // no 25th hour
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|err| format!("not a cron pattern: {text:?}: {err}"))?;
        Ok(Schedule {
            cron,
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Schedule {
    /// The next time after now, as an `Instant`; `None` if the pattern
    /// names no time to come (the 30th of February).
    pub(crate) fn next(&self) -> Option<Instant> {
        let now = chrono::Local::now();
        let next = self.cron.find_next_occurrence(&now, false).ok()?;
        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        Some(crate::os::later(Instant::now(), wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_time_comes_within_its_period() {
        let every_two_seconds: Schedule = "*/2 * * * * *".parse().unwrap();
        let next = every_two_seconds.next().unwrap();
        assert!(next <= Instant::now() + Duration::from_secs(2), "{next:?}");
        let nightly: Schedule = "0 3 * * *".parse().unwrap();
        let next = nightly.next().unwrap();
        assert!(next <= Instant::now() + Duration::from_secs(24 * 3600 + 3600));
        for bad in ["", "0 3 * *", "61 * * * *", "whenever"] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?}");
        }
    }
}
