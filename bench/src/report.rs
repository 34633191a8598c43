//! The comparison report: Kassa and its baselines (PostgreSQL, TigerBeetle) side by side per
//! mode, with ratios, the machine and every system's settings, as a table for people and as
//! JSON for scripts.
//!
//! Ratios are always "how many times better Kassa is": transfers/s Kassa ÷ baseline, and
//! latencies baseline ÷ Kassa, so a ratio above 1 favours Kassa in every column. Throughput
//! compares Kassa with PostgreSQL's batched variant (its best), latency mode with the
//! per-transfer variant at the same client count; TigerBeetle is driven exactly as Kassa is.
//! The goals are against PostgreSQL. Pure formatting; `main.rs` prints it.

use std::fmt::Write;

use serde::Serialize;

use crate::machine::Machine;
use crate::postgres::server::PgSettings;
use crate::results::{RunResult, Verification};

/// Throughput goal: Kassa at least this many times PostgreSQL batched ...
pub const GOAL_THROUGHPUT_RATIO: f64 = 25.0;
/// ... and at least this many transfers per second.
pub const GOAL_THROUGHPUT_PER_S: f64 = 400_000.0;
/// Latency-mode goal: at least this many times PostgreSQL per-transfer's transfers/s, with a
/// p99 no worse than PostgreSQL's.
pub const GOAL_LATENCY_MODE_RATIO: f64 = 5.0;

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub mode: &'static str,
    /// The system Kassa is compared with: "postgres" or "tigerbeetle".
    pub baseline: &'static str,
    pub transfers_per_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// The goal for this comparison, if there is one.
    pub goal: Option<String>,
    pub goal_met: bool,
}

/// Everything `--json-out` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date_utc: String,
    pub command: Vec<String>,
    pub machine: Machine,
    pub workload: String,
    pub kassa: String,
    pub postgres: Option<PgSettings>,
    /// TigerBeetle's version and setup, when it ran.
    pub tigerbeetle: Option<String>,
    pub results: Vec<RunResult>,
    pub ratios: Vec<Ratio>,
    pub verifications: Vec<Verification>,
}

impl Report {
    /// Pairs Kassa's result of each mode with each baseline's.
    pub fn ratios(results: &[RunResult]) -> Vec<Ratio> {
        let find = |system: &str, mode: &str| {
            results
                .iter()
                .find(|r| r.system == system && r.mode == mode)
        };
        let mut ratios = Vec::new();
        for mode in ["throughput", "latency"] {
            let Some(kassa) = find("kassa", mode) else {
                continue;
            };
            for baseline in ["postgres", "tigerbeetle"] {
                if let Some(other) = find(baseline, mode) {
                    ratios.push(ratio(mode, baseline, kassa, other));
                }
            }
        }
        ratios
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "kassa-bench report, {}", self.date_utc);
        let _ = writeln!(out, "machine:  {}", self.machine.line());
        let _ = writeln!(out, "workload: {}", self.workload);
        let _ = writeln!(out, "Kassa:    {}", self.kassa);
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                out,
                "PostgreSQL: {}, {}",
                pg.version,
                pg.settings
                    .iter()
                    .filter(|s| !s.starts_with("unix_socket") && !s.starts_with("port"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(tigerbeetle) = &self.tigerbeetle {
            let _ = writeln!(out, "TigerBeetle: {tigerbeetle}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| mode | system | clients × batch | transfers/s | p50 ms | p99 ms | p99.9 ms | max ms | created | failed |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
        for mode in ["throughput", "latency"] {
            for result in self.results.iter().filter(|r| r.mode == mode) {
                let _ = writeln!(out, "{}", row(result));
            }
            for ratio in self.ratios.iter().filter(|r| r.mode == mode) {
                let _ = writeln!(
                    out,
                    "| {mode} | **ratio** (Kassa ÷ {}) | | **{:.2}×** | {:.2}× | {:.2}× | {:.2}× | {:.2}× | | |",
                    system_name(ratio.baseline),
                    ratio.transfers_per_s,
                    ratio.p50,
                    ratio.p99,
                    ratio.p999,
                    ratio.max
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Ratios: transfers/s Kassa ÷ baseline; latencies baseline ÷ Kassa (above 1 favours Kassa). Latency is per request (a whole batch in throughput mode)."
        );
        for ratio in &self.ratios {
            let Some(goal) = &ratio.goal else { continue };
            let verdict = if ratio.goal_met { "met" } else { "NOT met" };
            let _ = writeln!(out, "goal ({}): {goal} — {verdict}", ratio.mode);
        }
        for verification in &self.verifications {
            if verification.passed() {
                let _ = writeln!(
                    out,
                    "verified {}: {} acknowledged transfers present, balances match, every ledger balanced",
                    verification.system, verification.transfers_checked
                );
            } else {
                let _ = writeln!(
                    out,
                    "VERIFICATION FAILED on {}: {}",
                    verification.system,
                    verification.problems.join("; ")
                );
            }
        }
        out
    }
}

/// Kassa against `other` in `mode`; the goals apply to PostgreSQL.
fn ratio(
    mode: &'static str,
    baseline: &'static str,
    kassa: &RunResult,
    other: &RunResult,
) -> Ratio {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    let latency = |k: u64, o: u64| ratio(o as f64, k as f64);
    let transfers_per_s = ratio(kassa.transfers_per_s, other.transfers_per_s);
    let (goal, goal_met) = match (baseline, mode) {
        ("postgres", "throughput") => (
            Some(format!(
                "≥ {GOAL_THROUGHPUT_RATIO}× PostgreSQL batched and ≥ {GOAL_THROUGHPUT_PER_S} transfers/s"
            )),
            transfers_per_s >= GOAL_THROUGHPUT_RATIO
                && kassa.transfers_per_s >= GOAL_THROUGHPUT_PER_S,
        ),
        ("postgres", _) => (
            Some(format!(
                "≥ {GOAL_LATENCY_MODE_RATIO}× PostgreSQL per-transfer transfers/s, p99 ≤ PostgreSQL's"
            )),
            transfers_per_s >= GOAL_LATENCY_MODE_RATIO
                && kassa.latency.p99_us <= other.latency.p99_us,
        ),
        _ => (None, false),
    };
    Ratio {
        mode,
        baseline,
        transfers_per_s,
        p50: latency(kassa.latency.p50_us, other.latency.p50_us),
        p99: latency(kassa.latency.p99_us, other.latency.p99_us),
        p999: latency(kassa.latency.p999_us, other.latency.p999_us),
        max: latency(kassa.latency.max_us, other.latency.max_us),
        goal,
        goal_met,
    }
}

/// How the report names a system.
fn system_name(system: &str) -> &'static str {
    match system {
        "kassa" => "Kassa",
        "postgres" => "PostgreSQL",
        "tigerbeetle" => "TigerBeetle",
        _ => "?",
    }
}

fn row(result: &RunResult) -> String {
    let system = match result.system {
        "postgres" => format!("PostgreSQL ({})", result.variant),
        other => system_name(other).to_string(),
    };
    let failed = if result.failed.is_empty() {
        "0".to_string()
    } else {
        result
            .failed
            .iter()
            .map(|(status, count)| format!("{count} {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "| {} | {system} | {} × {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {failed} |",
        result.mode,
        result.concurrency,
        result.batch_size,
        result.transfers_per_s,
        ms(result.latency.p50_us),
        ms(result.latency.p99_us),
        ms(result.latency.p999_us),
        ms(result.latency.max_us),
        result.transfers_created,
    )
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time.
pub fn date_utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let (hour, minute) = ((unix_s % 86_400) / 3600, (unix_s % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Latency;
    use std::collections::BTreeMap;

    fn result(system: &'static str, mode: &'static str, per_s: f64, p99: u64) -> RunResult {
        RunResult {
            system,
            mode,
            variant: "v",
            concurrency: 1,
            batch_size: 1,
            transfers_sent: 10,
            transfers_created: 10,
            failed: BTreeMap::new(),
            requests: 10,
            elapsed_s: 1.0,
            transfers_per_s: per_s,
            latency: Latency {
                p50_us: p99 / 2,
                p99_us: p99,
                p999_us: p99,
                max_us: p99,
                mean_us: 1.0,
            },
        }
    }

    #[test]
    fn ratios_favour_kassa_above_one_and_judge_the_goals() {
        let results = [
            result("kassa", "throughput", 500_000.0, 1000),
            result("postgres", "throughput", 10_000.0, 4000),
            result("kassa", "latency", 20_000.0, 3000),
            result("postgres", "latency", 5_000.0, 2000),
        ];
        let ratios = Report::ratios(&results);
        assert_eq!(ratios.len(), 2);
        assert_eq!(ratios[0].transfers_per_s, 50.0);
        assert_eq!(ratios[0].p99, 4.0);
        assert!(ratios[0].goal_met);
        assert!(!ratios[1].goal_met, "p99 worse than PostgreSQL's");
    }

    #[test]
    fn each_baseline_gets_its_ratio_and_only_postgresql_a_goal() {
        let results = [
            result("kassa", "throughput", 800_000.0, 1000),
            result("postgres", "throughput", 10_000.0, 4000),
            result("tigerbeetle", "throughput", 400_000.0, 2000),
            result("kassa", "latency", 20_000.0, 3000),
            result("tigerbeetle", "latency", 10_000.0, 6000),
        ];
        let ratios = Report::ratios(&results);
        let found: Vec<(&str, &str)> = ratios.iter().map(|r| (r.mode, r.baseline)).collect();
        assert_eq!(
            found,
            [
                ("throughput", "postgres"),
                ("throughput", "tigerbeetle"),
                ("latency", "tigerbeetle")
            ]
        );
        assert_eq!(ratios[1].transfers_per_s, 2.0);
        assert_eq!(ratios[1].p99, 2.0);
        assert!(ratios[1].goal.is_none() && ratios[2].goal.is_none());
        assert!(ratios[0].goal.is_some());
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(date_utc(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
    }
}
