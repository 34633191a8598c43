//! `kassa`: the Kassa node.
//!
//! `kassa start` runs a node (formatting its data directory on first start);
//! `kassa format` formats a data directory explicitly. `--help` on each lists every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use kassa_node::config::{ByteSize, Config, PARTITIONS_DEFAULT, PLACEMENT_DEFAULT};
use kassa_node::cores::CoreSetup;
use kassa_node::descriptors;
use kassa_node::http::{self, Api};
use kassa_node::meta::{self, ClusterMeta};
use kassa_node::service::Service;
use kassa_raft::MemoryBudget;
use kassa_shard::PlacementKind;
use kassa_storage::run::PageBudget;

#[derive(Parser)]
#[command(
    name = "kassa",
    version,
    about = "Kassa: a payments platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. With no arguments: data in ./kassa-data (formatted on first start if new or
    /// empty), HTTP on 127.0.0.1:8080, TigerBeetle's client protocol on 127.0.0.1:3000, one
    /// core thread per CPU. SIGTERM or SIGINT stops it cleanly, within 30 s.
    Start(Box<StartArgs>),
    /// Format a data directory for a new cluster.
    Format(FormatArgs),
}

#[derive(Args)]
struct StartArgs {
    /// A TOML file of settings; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the node keeps its data [default: kassa-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The HTTP API's address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http_address: Option<SocketAddr>,
    /// The wire protocol's address: TigerBeetle 0.17's client protocol, for TigerBeetle's
    /// official clients (`:0` picks a free port; the chosen one is printed)
    /// [default: 127.0.0.1:3000].
    #[arg(long, value_name = "ADDR")]
    wire_address: Option<SocketAddr>,
    /// Core threads; 0 for one per CPU [default: 0].
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// How a data directory formatted by this start places records (`kassa format
    /// --placement`); refused if the directory is formatted with another [default: ledger].
    #[arg(long, value_name = "HOW", value_parser = ["id", "ledger"])]
    placement: Option<String>,
    /// Snapshot each partition after this many log entries, or after 512 MiB of log
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    snapshot_entries: Option<u64>,
    /// The bound on what grows with the ledgers' history: each partition checkpoints once
    /// the node's memtables pass their share of it, and the cold-block caches take an eighth.
    /// Bytes or a size such as 4GiB, 512MiB; at least 64MiB [default: 4GiB].
    #[arg(long, value_name = "SIZE")]
    memory: Option<ByteSize>,
    /// Bytes of cold run blocks cached, over all partitions; 0 for an eighth of --memory
    /// [default: 0].
    #[arg(long, value_name = "SIZE")]
    cache_bytes: Option<ByteSize>,
    /// Bytes of the runs' index and filter pages kept in memory, over all partitions; past
    /// it, pages are read through the cold-block caches. 0 for an eighth of --memory
    /// [default: 0].
    #[arg(long, value_name = "SIZE")]
    pages_bytes: Option<ByteSize>,
    /// HTTP connections served at once; one more is answered 503 and closed [default: 4096].
    #[arg(long, value_name = "N")]
    http_connections_max: Option<usize>,
    /// Close an HTTP connection idle this long between requests [default: 60000].
    #[arg(long, value_name = "MS")]
    http_idle_timeout_ms: Option<u64>,
    /// Close an HTTP connection whose request headers take this long [default: 10000].
    #[arg(long, value_name = "MS")]
    http_header_timeout_ms: Option<u64>,
    /// Answer 408 and close when a request body takes this long [default: 30000].
    #[arg(long, value_name = "MS")]
    http_body_timeout_ms: Option<u64>,
    /// Close an HTTP connection whose client does not read its response for this long
    /// [default: 30000].
    #[arg(long, value_name = "MS")]
    http_write_timeout_ms: Option<u64>,
    /// Wire connections served at once; more are closed at once [default: 4096].
    #[arg(long, value_name = "N")]
    wire_connections_max: Option<usize>,
    /// Close a wire connection that sends no frame for this long (TigerBeetle's clients ping
    /// while idle) [default: 300000].
    #[arg(long, value_name = "MS")]
    wire_idle_timeout_ms: Option<u64>,
    /// Close a wire connection whose frame, header and body, takes this long [default: 10000].
    #[arg(long, value_name = "MS")]
    wire_frame_timeout_ms: Option<u64>,
    /// Close a wire connection whose client does not read its reply for this long
    /// [default: 30000].
    #[arg(long, value_name = "MS")]
    wire_write_timeout_ms: Option<u64>,
}

#[derive(Args)]
struct FormatArgs {
    /// The data directory to format [default: kassa-data].
    #[arg(long, value_name = "DIR", default_value = "kassa-data")]
    data_dir: PathBuf,
    /// The cluster id, a u128.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    cluster_id: u128,
    /// Partitions of the cluster; fixed for its lifetime. Transfers between accounts of
    /// different partitions are atomic transactions across them.
    #[arg(long, value_name = "N", default_value_t = PARTITIONS_DEFAULT)]
    partitions: u32,
    /// How records are placed in partitions; fixed for the cluster's lifetime. `ledger`:
    /// every record of a ledger in the ledger's partition, so a batch of one ledger runs in
    /// one partition and ids stay unique through the id directory. `id`: each record in the
    /// partition its id hashes to (a transfer also in its accounts'), so most batches are
    /// transactions across partitions.
    #[arg(long, value_name = "HOW", default_value = PLACEMENT_DEFAULT.name(), value_parser = ["id", "ledger"])]
    placement: String,
}

/// Large buffers (a cross-partition decision's encoding, a growing index's new table) come
/// and go with every transaction. glibc serves blocks above its mmap threshold with fresh
/// mappings and unmaps them on free, so each such buffer costs its size in page faults and
/// kernel zeroing: a third of a 16-partition node's CPU under full batches. Serving them from
/// the heap and not trimming it reuses the memory instead.
fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    {
        // glibc's largest mmap threshold on 64-bit targets (a larger value is refused).
        const MMAP_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
        const TRIM_THRESHOLD: libc::c_int = 1024 * 1024 * 1024;
        // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        };
        if !set {
            eprintln!("kassa: could not tune the allocator; large buffers will page-fault");
        }
    }
}

fn main() -> anyhow::Result<()> {
    fail_stop_on_panic();
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KASSA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Start(args) => start(*args),
        Command::Format(args) => {
            let placement =
                PlacementKind::from_name(&args.placement).context("--placement is id or ledger")?;
            let meta = format(&args.data_dir, args.cluster_id, args.partitions, placement)?;
            println!(
                "kassa: formatted {} for cluster {} with {} partition(s), placed by {}",
                args.data_dir.display(),
                meta.cluster_id,
                meta.partitions,
                meta.placement
            );
            Ok(())
        }
    }
}

fn config_of(args: StartArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.data_dir = args.data_dir.unwrap_or(config.data_dir);
    config.http_address = args.http_address.unwrap_or(config.http_address);
    config.wire_address = args.wire_address.unwrap_or(config.wire_address);
    config.cores = args.cores.unwrap_or(config.cores);
    config.snapshot_entries = args.snapshot_entries.unwrap_or(config.snapshot_entries);
    config.memory = args.memory.unwrap_or(config.memory);
    config.cache_bytes = args.cache_bytes.unwrap_or(config.cache_bytes);
    config.pages_bytes = args.pages_bytes.unwrap_or(config.pages_bytes);
    let set = |flag: Option<u64>, setting: &mut u64| *setting = flag.unwrap_or(*setting);
    set(args.http_idle_timeout_ms, &mut config.http_idle_timeout_ms);
    set(
        args.http_header_timeout_ms,
        &mut config.http_header_timeout_ms,
    );
    set(args.http_body_timeout_ms, &mut config.http_body_timeout_ms);
    set(
        args.http_write_timeout_ms,
        &mut config.http_write_timeout_ms,
    );
    set(args.wire_idle_timeout_ms, &mut config.wire_idle_timeout_ms);
    set(
        args.wire_frame_timeout_ms,
        &mut config.wire_frame_timeout_ms,
    );
    set(
        args.wire_write_timeout_ms,
        &mut config.wire_write_timeout_ms,
    );
    config.http_connections_max = args
        .http_connections_max
        .unwrap_or(config.http_connections_max);
    config.wire_connections_max = args
        .wire_connections_max
        .unwrap_or(config.wire_connections_max);
    Ok(config)
}

fn start(args: StartArgs) -> anyhow::Result<()> {
    let placement = args.placement.clone();
    let mut config = config_of(args)?;
    let cores_count = config.cores_resolved()?;
    let meta = match block_on_monoio(meta::load(&config.data_dir))?? {
        Some(meta) => {
            if let Some(wanted) = placement.filter(|wanted| *wanted != meta.placement) {
                bail!(
                    "{} is formatted with placement by {}; --placement {wanted} applies only \
                     to a directory this start formats",
                    config.data_dir.display(),
                    meta.placement
                );
            }
            meta
        }
        None => {
            let name = placement.as_deref().unwrap_or(PLACEMENT_DEFAULT.name());
            let kind = PlacementKind::from_name(name).context("--placement is id or ledger")?;
            let meta = format(&config.data_dir, 0, PARTITIONS_DEFAULT, kind)?;
            println!(
                "kassa: formatted {} (cluster 0, {PARTITIONS_DEFAULT} partitions placed by {name})",
                config.data_dir.display()
            );
            meta
        }
    };
    fit_descriptors(&mut config, meta.partitions, cores_count)?;
    let memory = config.memory_plan(meta.partitions)?;
    let pages = usize::try_from(memory.pages_limit).unwrap_or(usize::MAX);
    let budget = MemoryBudget::new(
        memory.memtable_limit,
        PageBudget::new(pages),
        meta.partitions,
    );
    let setup = CoreSetup {
        data_dir: config.data_dir.clone(),
        partitions: meta.partitions,
        placement: meta.placement_kind(),
        cores: cores_count,
        snapshot_entries: config.snapshot_entries,
        cache_blocks: memory.cache_blocks,
        memory: budget.clone(),
        hash_seed: std::process::id() as u64 ^ kassa_node::cores::realtime_ns(),
        pulses: Default::default(),
        cross_expiries: async_channel::bounded(1).0,
    };
    let service = Service::start(setup).context("opening the partitions")?;
    let cluster: u128 = meta
        .cluster_id
        .parse()
        .context("the cluster id in the data directory")?;
    let wire = kassa_node::wire::start(
        config.wire_address,
        &service,
        cluster,
        kassa_node::wire::WireLimits::from_config(&config),
    );
    let wire = match wire {
        Ok(wire) => wire,
        Err(error) => {
            let _ = service.shutdown();
            bail!("wire protocol on {}: {error}", config.wire_address);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http_limits = http::HttpLimits::from_config(&config);
    let api = Arc::new(Api {
        service,
        limits: http_limits,
        memory: http::metrics::NodeMemory {
            data_dir: config.data_dir.clone(),
            plan: memory,
            budget,
        },
    });
    let served = runtime.block_on(async {
        let listener = http::bind(config.http_address).await?;
        let address = listener.local_addr()?;
        println!(
            "kassa: cluster {} ready: HTTP API on http://{address}, wire protocol on {wire}, data in {}, {} core(s), {} partition(s) placed by {}",
            meta.cluster_id,
            config.data_dir.display(),
            cores_count,
            meta.partitions,
            meta.placement
        );
        let (stopping, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(watch_signals(stopping));
        let mut graceful = stop.clone();
        let graceful = async move {
            let _ = graceful.wait_for(|stopping| *stopping).await;
        };
        tokio::select! {
            served = http::serve(listener, api.clone(), http_limits, graceful) => served?,
            () = drain_deadline(stop) => eprintln!(
                "kassa: HTTP requests still open after {}s; stopping without them",
                DRAIN_TIMEOUT.as_secs()
            ),
        }
        anyhow::Ok(())
    });
    drop(runtime);
    let api = Arc::try_unwrap(api).map_err(|_| anyhow::anyhow!("HTTP requests still running"))?;
    let clean = api.service.shutdown();
    served?;
    if !clean {
        eprintln!(
            "kassa: stopped without finishing everything in flight; nothing acknowledged is lost"
        );
        std::process::exit(1);
    }
    println!("kassa: stopped cleanly");
    Ok(())
}

/// Raises the open-files limit and fits the connection caps under it, with room for the
/// node's own files (`descriptors`).
fn fit_descriptors(config: &mut Config, partitions: u32, cores: usize) -> anyhow::Result<()> {
    let limit = descriptors::raise_open_files_limit().context("raising the open-files limit")?;
    if descriptors::fit_connections(config, limit, partitions, cores)? {
        eprintln!(
            "kassa: the open-files limit ({limit}) leaves room for {} HTTP and {} wire \
             connections once the node's own files are reserved; raise the hard limit for more",
            config.http_connections_max, config.wire_connections_max
        );
    }
    Ok(())
}

fn format(
    data_dir: &Path,
    cluster_id: u128,
    partitions: u32,
    placement: PlacementKind,
) -> anyhow::Result<ClusterMeta> {
    Ok(block_on_monoio(meta::format(
        data_dir, cluster_id, partitions, placement,
    ))??)
}

/// Runs `future` on a short-lived io_uring runtime (for start-up file work).
fn block_on_monoio<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .context("starting an io_uring runtime")?;
    Ok(runtime.block_on(future))
}

/// A panic anywhere is a bug: stop the whole process at once rather than run on with a core
/// thread gone (its partitions unserved, its queue never drained). Every acknowledged write is
/// already durable, so the next start recovers exactly as after a crash.
fn fail_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("kassa: a thread panicked; stopping the process (restart recovers from disk)");
        std::process::abort();
    }));
}

/// How long a stop waits for open HTTP requests (a stalled client must not hold the node).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The first SIGTERM or SIGINT starts a clean stop; a second one exits at once (every
/// acknowledged write is already durable, so that is as safe as a crash).
async fn watch_signals(stopping: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    let mut interrupt = match signal(SignalKind::interrupt()) {
        Ok(interrupt) => interrupt,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGINT");
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!("kassa: stopping: finishing in-flight requests (signal again to exit at once)");
    let _ = stopping.send(true);
    watch_stop_deadline();
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!("kassa: second signal: exiting now");
    std::process::exit(1);
}

/// The longest a stop takes: HTTP requests (`DRAIN_TIMEOUT`), then transactions (the
/// service's own bound), then the partitions' logs. Past it the process exits at once.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Exits the process if a stop has not finished `STOP_TIMEOUT` from now. Every acknowledged
/// write is durable, so such an exit loses nothing: the next start recovers as after a crash.
fn watch_stop_deadline() {
    let watchdog = std::thread::Builder::new()
        .name("kassa-stop-deadline".into())
        .spawn(|| {
            std::thread::sleep(STOP_TIMEOUT);
            eprintln!(
                "kassa: the stop did not finish within {}s; exiting now (nothing acknowledged \
                 is lost: the next start recovers)",
                STOP_TIMEOUT.as_secs()
            );
            // SAFETY: _exit ends the process at once; it takes no pointers.
            unsafe { libc::_exit(1) }
        });
    if let Err(error) = watchdog {
        tracing::error!(%error, "cannot bound the stop's duration");
    }
}

/// Resolves `DRAIN_TIMEOUT` after a stop began.
async fn drain_deadline(mut stop: tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(DRAIN_TIMEOUT).await;
}
