//! `kassa-bench`: Kassa's node against PostgreSQL and TigerBeetle doing the same double-entry
//! transfers, in one command. See `kassa-bench --help` and BENCHMARKS.md.
//!
//! Order: measure the machine; then Kassa (start a node if `--start`, create and fund the
//! accounts, run each mode, verify, stop); then each baseline in the order given (PostgreSQL:
//! a throw-away cluster; TigerBeetle: a throw-away replica driven by the same client code as
//! Kassa), with the same setup, modes and verification; then the report. Each system runs
//! alone, so none competes with another for the cores. Exit status: 0 when every verification
//! passed, 1 when one failed, 2 on bad arguments or a failure to run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use kassa_bench::kassa::Target;
use kassa_bench::load;
use kassa_bench::machine::Machine;
use kassa_bench::node_process::{sibling_kassa, KassaProcess};
use kassa_bench::plan::{self, Distribution, Phase, Plan, PlanConfig};
use kassa_bench::postgres::server::PgServer;
use kassa_bench::postgres::{self, submit};
use kassa_bench::report::{date_utc, Report};
use kassa_bench::results::{RunResult, Tally, Verification};
use kassa_bench::tigerbeetle::TigerBeetleProcess;
use kassa_wire::BATCH_EVENTS_MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Full batches, several in flight: the most transfers per second.
    Throughput,
    /// One transfer per request from many clients: the latency a payment sees.
    Latency,
    /// Throughput, then latency.
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DistributionArg {
    /// Both accounts of a transfer drawn uniformly.
    Uniform,
    /// Credit accounts Zipf-distributed (a few hot merchants), debit accounts uniform.
    Zipf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Baseline {
    /// A throw-away PostgreSQL cluster running the same workload (found, or installed with
    /// apt-get when root).
    Postgres,
    /// A throw-away TigerBeetle replica (the binary given by --tigerbeetle-bin), driven by the
    /// same client code as Kassa.
    Tigerbeetle,
    /// Kassa alone.
    None,
}

/// Kassa against PostgreSQL: throughput and latency of double-entry transfers, acknowledged
/// only once durable on both sides, verified at the end.
#[derive(Debug, Parser)]
#[command(name = "kassa-bench", version)]
struct Args {
    /// The node's wire address (TigerBeetle's client protocol), unless --start.
    #[arg(long, default_value = "127.0.0.1:3000", value_name = "ADDR")]
    address: SocketAddr,
    /// The node's cluster id.
    #[arg(long, default_value_t = 0, value_name = "ID")]
    cluster: u128,
    /// Start a fresh node in a temporary data directory (removed at the end) instead of
    /// using --address.
    #[arg(long)]
    start: bool,
    /// The `kassa` binary for --start (default: the one next to kassa-bench).
    #[arg(long, value_name = "PATH")]
    kassa_bin: Option<PathBuf>,
    /// With --start: format the node with this many partitions (default: the node's, 16).
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// With --start: how the node places records in partitions, `id` or `ledger` (default:
    /// the node's, ledger).
    #[arg(long, value_name = "PLACEMENT", value_parser = ["id", "ledger"])]
    placement: Option<String>,
    /// With --start: the node's core threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    cores: Option<u32>,
    /// Where temporary data directories go (Kassa's, PostgreSQL's, the flush probe's).
    /// Default: the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Accounts, spread over the ledgers; every tenth of a ledger has
    /// debits_must_not_exceed_credits and is funded before the run.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    accounts: u64,
    /// Ledgers (1, 2, ...): account i is on ledger 1 + i % L, and each batch holds
    /// transfers of one ledger, the ledgers taking turns (an application batching per
    /// tenant or currency). Under placement by ledger they spread over the partitions.
    #[arg(long, default_value_t = 1, value_name = "L")]
    ledgers: u32,
    /// Every batch mixes the ledgers, which take turns transfer by transfer (an application
    /// batching payments of several tenants or currencies together). Under placement by
    /// ledger such a batch spans partitions: it runs in shares, or through the coordinator.
    #[arg(long)]
    mix_ledgers: bool,
    /// Transfers per mode.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    transfers: u64,
    /// Transfers in latency mode, if not --transfers (one request each, so slower to run).
    #[arg(long, value_name = "N")]
    latency_transfers: Option<u64>,
    /// How accounts are chosen.
    #[arg(long, value_enum, default_value_t = DistributionArg::Uniform)]
    distribution: DistributionArg,
    /// Zipf exponent for --distribution zipf.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    zipf_s: f64,
    /// Share of transfers that are pending (two-phase), each later posted (75%) or voided
    /// (25%) by another transfer of the run; 0 to 0.5.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    two_phase_share: f64,
    /// Which modes to run.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Transfers per request in throughput mode (at most 8189).
    #[arg(long, default_value_t = BATCH_EVENTS_MAX, value_name = "N")]
    batch_size: usize,
    /// Throughput mode: clients, each with one batch in flight.
    #[arg(long, default_value_t = 4, value_name = "K")]
    in_flight: usize,
    /// Latency mode: clients, each with one single-transfer request in flight.
    #[arg(long, default_value_t = 64, value_name = "C")]
    clients: usize,
    /// The systems to compare with, comma-separated (e.g. postgres,tigerbeetle), or none.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "postgres")]
    baseline: Vec<Baseline>,
    /// The TigerBeetle binary for --baseline tigerbeetle.
    #[arg(long, value_name = "PATH")]
    tigerbeetle_bin: Option<PathBuf>,
    /// Seed of the workload: the same seed gives both systems the same transfers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the whole report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// With --start: profile the node during Kassa's throughput run with
    /// `perf record -e cpu-clock -g`, writing FILE (read it with `perf report -i FILE`).
    #[arg(long, value_name = "FILE")]
    perf_out: Option<PathBuf>,
}

/// Upper bound on clients and batches in flight (each is a connection on both systems).
const CONNECTIONS_MAX: usize = 1024;
/// TigerBeetle 0.17.8 serves 32 client connections at once; a 33rd waits unanswered (measured:
/// 32 latency clients run, 33 stall until the client's deadline). Its runs use at most this.
const TIGERBEETLE_CLIENTS_MAX: usize = 32;

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        if self.accounts < 2 || self.accounts > plan::ACCOUNTS_MAX {
            bail!("--accounts must be 2 to {}", plan::ACCOUNTS_MAX);
        }
        if self.ledgers == 0 || self.ledgers > plan::LEDGERS_MAX {
            bail!("--ledgers must be 1 to {}", plan::LEDGERS_MAX);
        }
        if self.mix_ledgers && self.ledgers < 2 {
            bail!("--mix-ledgers needs --ledgers 2 or more");
        }
        if self.accounts < 2 * u64::from(self.ledgers) {
            bail!("--accounts must be at least twice --ledgers (two accounts per ledger)");
        }
        let latency = self.latency_transfers.unwrap_or(self.transfers);
        if self.transfers > plan::TRANSFERS_MAX || latency > plan::TRANSFERS_MAX {
            bail!("at most {} transfers per mode", plan::TRANSFERS_MAX);
        }
        if self.batch_size == 0 || self.batch_size > BATCH_EVENTS_MAX {
            bail!("--batch-size must be 1 to {BATCH_EVENTS_MAX}");
        }
        for (name, value) in [("--in-flight", self.in_flight), ("--clients", self.clients)] {
            if value == 0 || value > CONNECTIONS_MAX {
                bail!("{name} must be 1 to {CONNECTIONS_MAX}");
            }
        }
        if !(0.0..=0.5).contains(&self.two_phase_share) {
            bail!("--two-phase-share must be between 0 and 0.5");
        }
        if !(self.zipf_s > 0.0 && self.zipf_s <= 10.0) {
            bail!("--zipf-s must be above 0 and at most 10");
        }
        if !self.start
            && (self.partitions.is_some() || self.cores.is_some() || self.placement.is_some())
        {
            bail!("--partitions, --placement and --cores apply only with --start");
        }
        if self.perf_out.is_some() && !self.start {
            bail!("--perf-out needs --start (the node's pid)");
        }
        if self.baseline.contains(&Baseline::None) && self.baseline.len() > 1 {
            bail!("--baseline none runs Kassa alone; it cannot be combined with another");
        }
        if self.baseline.contains(&Baseline::Tigerbeetle) && self.tigerbeetle_bin.is_none() {
            bail!("--baseline tigerbeetle needs --tigerbeetle-bin PATH");
        }
        for (index, baseline) in self.baseline.iter().enumerate() {
            if self.baseline[..index].contains(baseline) {
                bail!("--baseline names {baseline:?} twice");
            }
        }
        Ok(())
    }

    fn modes(&self) -> Vec<Mode> {
        match self.mode {
            Mode::Both => vec![Mode::Throughput, Mode::Latency],
            mode => vec![mode],
        }
    }

    fn plan(&self, mode: Mode, tag: u32) -> Plan {
        let (transfers, batch_size, concurrency, phase) = match mode {
            Mode::Latency => (
                self.latency_transfers.unwrap_or(self.transfers),
                1,
                self.clients,
                Phase::Latency,
            ),
            _ => (
                self.transfers,
                self.batch_size,
                self.in_flight,
                Phase::Throughput,
            ),
        };
        let distribution = match self.distribution {
            DistributionArg::Uniform => Distribution::Uniform,
            DistributionArg::Zipf => Distribution::Zipf { s: self.zipf_s },
        };
        let config = PlanConfig {
            accounts: self.accounts,
            ledgers: self.ledgers,
            mix_ledgers: self.mix_ledgers,
            transfers,
            distribution,
            two_phase_share: self.two_phase_share,
            seed: self.seed,
            tag,
            batch_size,
            defer_batches: 2 * concurrency,
        };
        plan::generate(&config, phase)
    }

    fn concurrency(&self, mode: Mode) -> usize {
        match mode {
            Mode::Latency => self.clients,
            _ => self.in_flight,
        }
    }

    fn workload_line(&self) -> String {
        let distribution = match self.distribution {
            DistributionArg::Uniform => "uniform".to_string(),
            DistributionArg::Zipf => format!("zipf s={} on credit accounts", self.zipf_s),
        };
        format!(
            "{} accounts on {} ledger(s){} (every 10th debits_must_not_exceed_credits, funded), {} transfers per mode ({} in latency mode), amounts 1–1000, {distribution}, two-phase share {}, seed {}",
            self.accounts,
            self.ledgers,
            if self.mix_ledgers {
                ", mixed in every batch"
            } else {
                ""
            },
            self.transfers,
            self.latency_transfers.unwrap_or(self.transfers),
            self.two_phase_share,
            self.seed
        )
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Latency => "latency",
        _ => "throughput",
    }
}

/// A directory removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(parent: &Path) -> anyhow::Result<WorkDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("kassa-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        // PostgreSQL's user must be able to reach its own directory inside.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = args.validate() {
        eprintln!("kassa-bench: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kassa-bench: starting the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("kassa-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything; `Ok(false)` when a verification failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&parent)?;
    let machine = Machine::measure(&work.0).context("measuring the machine")?;
    eprintln!("kassa-bench: machine: {}", machine.line());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Distinct ids per invocation, so repeated runs against one node never collide.
    let tag = ((now.as_nanos() as u32) ^ std::process::id()).max(1);
    let accounts = plan::accounts(tag, args.accounts, args.ledgers);
    let funding = plan::funding(tag, args.accounts, args.ledgers);
    let plans: Vec<(Mode, Arc<Plan>)> = args
        .modes()
        .into_iter()
        .map(|mode| (mode, Arc::new(args.plan(mode, tag))))
        .collect();
    let mut results = Vec::new();
    let mut verifications = Vec::new();
    let kassa_line = run_kassa(&args, &work.0, &accounts, &funding, &plans, &mut results)
        .await
        .map(|(line, verification)| {
            verifications.push(verification);
            line
        })?;
    let mut pg_settings = None;
    let mut tigerbeetle_line = None;
    for baseline in &args.baseline {
        match baseline {
            Baseline::Postgres => {
                let (settings, verification) = run_postgres(
                    &args,
                    &work.0,
                    &machine,
                    &accounts,
                    &funding,
                    &plans,
                    &mut results,
                )
                .await?;
                pg_settings = Some(settings);
                verifications.push(verification);
            }
            Baseline::Tigerbeetle => {
                let (line, verification) =
                    run_tigerbeetle(&args, &work.0, &accounts, &funding, &plans, &mut results)
                        .await?;
                tigerbeetle_line = Some(line);
                verifications.push(verification);
            }
            Baseline::None => {}
        }
    }
    let report = Report {
        date_utc: date_utc(now.as_secs()),
        command: std::env::args().collect(),
        machine,
        workload: args.workload_line(),
        kassa: kassa_line,
        postgres: pg_settings,
        tigerbeetle: tigerbeetle_line,
        ratios: Report::ratios(&results),
        results,
        verifications,
    };
    println!("\n{}", report.text());
    for result in &report.results {
        println!("{}", serde_json::to_string(result)?);
    }
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.verifications.iter().all(Verification::passed))
}

/// Kassa's part: returns its description line and its verification.
async fn run_kassa(
    args: &Args,
    work: &Path,
    accounts: &[kassa_wire::Account],
    funding: &[kassa_wire::Transfer],
    plans: &[(Mode, Arc<Plan>)],
    results: &mut Vec<RunResult>,
) -> anyhow::Result<(String, Verification)> {
    let node = if args.start {
        let binary = match &args.kassa_bin {
            Some(path) => path.clone(),
            None => sibling_kassa().context("locating kassa-bench's own executable")?,
        };
        let data_dir = work.join("kassa");
        eprintln!(
            "kassa-bench: starting {} in {}",
            binary.display(),
            data_dir.display()
        );
        Some(KassaProcess::start(
            &binary,
            &data_dir,
            args.partitions,
            args.placement.as_deref(),
            args.cores,
        )?)
    } else {
        None
    };
    let target = Target {
        system: "kassa",
        address: node.as_ref().map_or(args.address, |n| n.wire),
        cluster: if node.is_some() { 0 } else { args.cluster },
    };
    let line = match &node {
        Some(_) => format!(
            "fresh node (kassa start), partitions: {}, placement: {}, core threads: {}, wire protocol on {}",
            args.partitions
                .map_or("16 (default)".to_string(), |p| p.to_string()),
            args.placement.as_deref().unwrap_or("ledger (default)"),
            args.cores
                .map_or("one per CPU".to_string(), |c| c.to_string()),
            target.address
        ),
        None => format!(
            "running node at {} (cluster {})",
            target.address, target.cluster
        ),
    };
    let profiled = match (&args.perf_out, &node) {
        (Some(path), Some(node)) => Some((path.as_path(), node.pid())),
        _ => None,
    };
    let (verification, run) =
        run_wire_server(args, target, accounts, funding, plans, profiled, None).await?;
    results.extend(run);
    if let Some(node) = node {
        node.stop()?;
    }
    Ok((line, verification))
}

/// TigerBeetle's part: a throw-away replica, the same client code as Kassa's. Returns its
/// description line and its verification.
async fn run_tigerbeetle(
    args: &Args,
    work: &Path,
    accounts: &[kassa_wire::Account],
    funding: &[kassa_wire::Transfer],
    plans: &[(Mode, Arc<Plan>)],
    results: &mut Vec<RunResult>,
) -> anyhow::Result<(String, Verification)> {
    let binary = args
        .tigerbeetle_bin
        .as_deref()
        .context("--baseline tigerbeetle needs --tigerbeetle-bin")?;
    let replica = TigerBeetleProcess::start(binary, &work.join("tigerbeetle"))?;
    eprintln!(
        "kassa-bench: {} (one replica) on {}",
        replica.version, replica.address
    );
    let target = Target {
        system: "tigerbeetle",
        address: replica.address,
        cluster: 0,
    };
    let line = format!(
        "{}, one replica (cluster 0, replica count 1), fresh data file, on {}",
        replica.version, replica.address
    );
    let (verification, run) = run_wire_server(
        args,
        target,
        accounts,
        funding,
        plans,
        None,
        Some(TIGERBEETLE_CLIENTS_MAX),
    )
    .await?;
    results.extend(run);
    replica.stop();
    Ok((line, verification))
}

/// Runs every mode against a server of TigerBeetle's client protocol: sets up and funds the
/// accounts, runs the plans (profiling the first throughput run of `profiled`'s pid with perf)
/// with at most `clients_max` connections, and verifies. Returns the verification and the
/// results.
async fn run_wire_server(
    args: &Args,
    target: Target,
    accounts: &[kassa_wire::Account],
    funding: &[kassa_wire::Transfer],
    plans: &[(Mode, Arc<Plan>)],
    profiled: Option<(&Path, u32)>,
    clients_max: Option<usize>,
) -> anyhow::Result<(Verification, Vec<RunResult>)> {
    let system = target.system;
    eprintln!(
        "kassa-bench: {system}: creating {} accounts",
        accounts.len()
    );
    let mut tally = Tally::default();
    let mut results = Vec::new();
    target.setup(accounts, funding, &mut tally).await?;
    for (mode, plan) in plans {
        let wanted = args.concurrency(*mode);
        let concurrency = clients_max.map_or(wanted, |max| wanted.min(max));
        if concurrency < wanted {
            eprintln!(
                "kassa-bench: {system} {}: {concurrency} clients, not {wanted}: it serves at most {concurrency} client connections at once",
                mode_name(*mode)
            );
        }
        let clients = target.clients(concurrency).await?;
        let perf = match (profiled, mode) {
            (Some((path, pid)), Mode::Throughput) => Some(Perf::start(path, pid)?),
            _ => None,
        };
        let label = format!("{system} {}", mode_name(*mode));
        eprintln!("kassa-bench: {label}: {} transfers", plan.transfers.len());
        let outcome = load::run(plan.clone(), clients, &label).await?;
        if let Some(perf) = perf {
            perf.stop()?;
        }
        let names = (system, mode_name(*mode), "wire");
        let result = RunResult::of(names, concurrency, plan, &outcome, &mut tally);
        eprintln!("kassa-bench: {}", serde_json::to_string(&result)?);
        results.push(result);
    }
    eprintln!(
        "kassa-bench: {system}: verifying {} transfers",
        tally.acknowledged.len()
    );
    let verification = target.verify(accounts, &tally).await?;
    Ok((verification, results))
}

/// PostgreSQL's part: returns its settings and its verification.
async fn run_postgres(
    args: &Args,
    work: &Path,
    machine: &Machine,
    accounts: &[kassa_wire::Account],
    funding: &[kassa_wire::Transfer],
    plans: &[(Mode, Arc<Plan>)],
    results: &mut Vec<RunResult>,
) -> anyhow::Result<(postgres::server::PgSettings, Verification)> {
    let connections = args.clients.max(args.in_flight) + 10;
    let dir = work.join("postgres");
    let server = PgServer::start(&dir, connections, machine.memory_bytes)?;
    eprintln!(
        "kassa-bench: {} on 127.0.0.1:{}",
        server.settings.version, server.settings.port
    );
    let url = server.connection_string();
    let mut tally = Tally::default();
    postgres::setup(&url, accounts, funding, &mut tally).await?;
    for (mode, plan) in plans {
        let concurrency = args.concurrency(*mode);
        let label = format!("postgres {}", mode_name(*mode));
        eprintln!("kassa-bench: {label}: {} transfers", plan.transfers.len());
        let (outcome, variant) = if *mode == Mode::Latency {
            let mut submitters = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                submitters.push(submit::PerTransfer::new(postgres::connect(&url).await?).await?);
            }
            (
                load::run(plan.clone(), submitters, &label).await?,
                "per-transfer",
            )
        } else {
            let mut submitters = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                submitters.push(submit::Batched::new(postgres::connect(&url).await?).await?);
            }
            (
                load::run(plan.clone(), submitters, &label).await?,
                "batched",
            )
        };
        let names = ("postgres", mode_name(*mode), variant);
        let result = RunResult::of(names, concurrency, plan, &outcome, &mut tally);
        eprintln!("kassa-bench: {}", serde_json::to_string(&result)?);
        results.push(result);
    }
    eprintln!(
        "kassa-bench: PostgreSQL: verifying {} transfers",
        tally.acknowledged.len()
    );
    let verification = postgres::verify(&url, &tally).await?;
    let settings = server.settings.clone();
    server.stop()?;
    Ok((settings, verification))
}

/// `perf record` attached to the node for one run.
struct Perf(std::process::Child);

impl Perf {
    fn start(path: &Path, pid: u32) -> anyhow::Result<Perf> {
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("running perf (is it installed?)")?;
        // perf needs a moment to attach before the load starts.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Ok(Perf(child))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid, not yet waited for.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        self.0.wait().context("waiting for perf")?;
        Ok(())
    }
}
