//! A throw-away PostgreSQL cluster for the baseline: found (or, as root, installed with
//! apt-get), initialised in a temporary directory, started on a free port of 127.0.0.1 with
//! durable commits, stopped and removed at the end.
//!
//! Invariants: the durability settings are PostgreSQL's defaults and are written out
//! explicitly (`fsync`, `synchronous_commit`, `full_page_writes` on), so a commit is
//! acknowledged only once its WAL is flushed; the server listens on 127.0.0.1 only; PostgreSQL
//! refuses to run as root, so as root every PostgreSQL program runs as the unprivileged
//! `postgres` user (via `runuser`) and the directory is owned by that user. Dropping a
//! [`PgServer`] stops the server and removes its directory. Called by `main.rs`.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The user PostgreSQL's programs run as when kassa-bench runs as root (Debian's package
/// creates it).
const SERVICE_USER: &str = "postgres";
/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_TIMEOUT_S: u32 = 120;
/// `shared_buffers` is a quarter of memory, up to this.
const SHARED_BUFFERS_MB_MAX: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("PostgreSQL not found (no pg_ctl, initdb and postgres under /usr/lib/postgresql/*/bin or on PATH) and not root: install postgresql")]
    NotFoundNotRoot,
    #[error("`apt-get install -y postgresql` failed ({0}); install postgresql by hand")]
    InstallFailed(String),
    #[error("running as root, but there is no `{SERVICE_USER}` user to run PostgreSQL as (PostgreSQL refuses root): install Debian's postgresql package, which creates it")]
    NoServiceUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
}

/// PostgreSQL's settings for the run, as written to `postgresql.conf`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PgSettings {
    pub version: String,
    pub port: u16,
    pub max_connections: usize,
    pub shared_buffers_mb: u64,
    /// Every other setting written, as `name = value` (durability ones included).
    pub settings: Vec<String>,
}

/// A running throw-away cluster.
pub struct PgServer {
    bin_dir: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
    running: bool,
    pub settings: PgSettings,
}

impl PgServer {
    /// Initialises and starts a cluster in `dir` (created; must not exist) that accepts
    /// `max_connections` connections.
    pub fn start(
        dir: &Path,
        max_connections: usize,
        memory_bytes: u64,
    ) -> Result<PgServer, ServerError> {
        let bin_dir = match find_binaries() {
            Some(found) => found,
            None => install()?,
        };
        let run_as = if is_root() {
            Some(SERVICE_USER.to_string())
        } else {
            None
        };
        create_owned_dir(dir, run_as.as_deref())?;
        let version = version(&bin_dir)?;
        let port = crate::machine::free_port().map_err(|source| ServerError::Io {
            what: "finding a free port".to_string(),
            source,
        })?;
        let shared_buffers_mb = (memory_bytes / 4 / (1 << 20)).clamp(128, SHARED_BUFFERS_MB_MAX);
        let settings = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("port = {port}"),
            format!("unix_socket_directories = '{}'", dir.display()),
            format!("max_connections = {max_connections}"),
            format!("shared_buffers = '{shared_buffers_mb}MB'"),
            "fsync = on".to_string(),
            "synchronous_commit = on".to_string(),
            "full_page_writes = on".to_string(),
            // Room for the whole run's WAL, so no checkpoint is forced by WAL volume midway.
            "max_wal_size = '8GB'".to_string(),
            "checkpoint_timeout = '30min'".to_string(),
        ];
        let mut server = PgServer {
            bin_dir,
            dir: dir.to_path_buf(),
            run_as,
            running: false,
            settings: PgSettings {
                version,
                port,
                max_connections,
                shared_buffers_mb,
                settings,
            },
        };
        server.init_and_start()?;
        Ok(server)
    }

    /// The tokio-postgres connection string.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.settings.port
        )
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init_and_start(&mut self) -> Result<(), ServerError> {
        let data = self.data_dir();
        let data_arg = data.display().to_string();
        // --no-sync only skips initdb's own final fsync of the fresh cluster; the server
        // itself runs with fsync on.
        self.run(
            "initdb",
            &[
                "-D",
                &data_arg,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|source| ServerError::Io {
            what: format!("reading {}", conf.display()),
            source,
        })?;
        text.push_str("\n# kassa-bench\n");
        for setting in &self.settings.settings {
            text.push_str(setting);
            text.push('\n');
        }
        std::fs::write(&conf, text).map_err(|source| ServerError::Io {
            what: format!("writing {}", conf.display()),
            source,
        })?;
        let log = self.dir.join("server.log").display().to_string();
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        self.run(
            "pg_ctl",
            &["-D", &data_arg, "-l", &log, "-w", "-t", &timeout, "start"],
        )
        .map_err(|error| self.with_log(error))?;
        self.running = true;
        Ok(())
    }

    /// Appends the server log to a failure of `pg_ctl`.
    fn with_log(&self, error: ServerError) -> ServerError {
        match error {
            ServerError::Command {
                what,
                status,
                output,
            } => {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                ServerError::Command {
                    what,
                    status,
                    output: format!("{output}\nserver log:\n{log}"),
                }
            }
            other => other,
        }
    }

    /// Stops the server (fast shutdown) and removes its directory.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.stop_inner("fast")
    }

    fn stop_inner(&mut self, mode: &str) -> Result<(), ServerError> {
        if self.running {
            let data = self.data_dir().display().to_string();
            let timeout = PG_CTL_TIMEOUT_S.to_string();
            self.running = false;
            self.run(
                "pg_ctl",
                &["-D", &data, "-m", mode, "-w", "-t", &timeout, "stop"],
            )?;
        }
        std::fs::remove_dir_all(&self.dir).map_err(|source| ServerError::Io {
            what: format!("removing {}", self.dir.display()),
            source,
        })
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, ServerError> {
        let path = self.bin_dir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        checked(command, &format!("{} {}", path.display(), args.join(" ")))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running || self.dir.exists() {
            let _ = self.stop_inner("immediate");
        }
    }
}

fn checked(mut command: Command, what: &str) -> Result<Output, ServerError> {
    let output = command.output().map_err(|source| ServerError::Io {
        what: format!("running {what}"),
        source,
    })?;
    if output.status.success() {
        return Ok(output);
    }
    Err(ServerError::Command {
        what: what.to_string(),
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The directory holding `pg_ctl`, `initdb` and `postgres`: the newest under
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else the one on PATH.
pub fn find_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["pg_ctl", "initdb", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| complete(dir))
}

/// As root: `apt-get install -y postgresql` (after `apt-get update` if the first try fails).
fn install() -> Result<PathBuf, ServerError> {
    if !is_root() {
        return Err(ServerError::NotFoundNotRoot);
    }
    let apt = |args: &[&str]| {
        eprintln!(
            "kassa-bench: PostgreSQL not found; running apt-get {}",
            args.join(" ")
        );
        let mut command = Command::new("apt-get");
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        checked(command, &format!("apt-get {}", args.join(" ")))
    };
    if apt(&["install", "-y", "postgresql"]).is_err() {
        apt(&["update"]).map_err(|e| ServerError::InstallFailed(e.to_string()))?;
        apt(&["install", "-y", "postgresql"])
            .map_err(|e| ServerError::InstallFailed(e.to_string()))?;
    }
    find_binaries().ok_or_else(|| {
        ServerError::InstallFailed("installed, but pg_ctl/initdb/postgres still not found".into())
    })
}

fn version(bin_dir: &Path) -> Result<String, ServerError> {
    let mut command = Command::new(bin_dir.join("postgres"));
    command.arg("--version").stdin(Stdio::null());
    let output = checked(command, "postgres --version")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Creates `dir` (mode 0700), owned by `user` when given.
fn create_owned_dir(dir: &Path, user: Option<&str>) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: String| move |source| ServerError::Io { what, source };
    std::fs::create_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    if let Some(user) = user {
        let (uid, gid) = user_ids(user).ok_or(ServerError::NoServiceUser)?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(io(format!("chown {} to {user}", dir.display())))?;
    }
    Ok(())
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string; getpwnam returns null or a pointer to
    // a static record, read at once, before any other call could overwrite it.
    unsafe {
        let record = libc::getpwnam(name.as_ptr());
        if record.is_null() {
            return None;
        }
        Some(((*record).pw_uid, (*record).pw_gid))
    }
}
