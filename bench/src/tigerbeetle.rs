//! A throw-away TigerBeetle replica for `kassa-bench --baseline tigerbeetle`: one replica,
//! formatted on a fresh data file in the work directory, started on a free port of 127.0.0.1,
//! killed at the end. Kassa speaks TigerBeetle 0.17's client protocol, so the same client code
//! (`kassa::Target`) drives both, and the same verification reads both back.
//!
//! Invariants: the process is never left running (dropping a [`TigerBeetleProcess`] kills it);
//! the benchmark starts only once the replica accepts connections. Called by `main.rs`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a new replica may take to listen (it allocates its caches first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the start-up probe tries to connect.
const START_PROBE_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TigerBeetleError {
    #[error("the TigerBeetle binary was not found at {0} (pass --tigerbeetle-bin)")]
    BinaryMissing(PathBuf),
    #[error("running {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`tigerbeetle format` failed ({status}): {output}")]
    Format {
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("TigerBeetle did not listen on {address} within {START_TIMEOUT:?}; its log:\n{log}")]
    NotReady { address: SocketAddr, log: String },
    #[error("finding a free port: {0}")]
    Port(std::io::Error),
}

/// A running replica.
pub struct TigerBeetleProcess {
    child: Child,
    pub address: SocketAddr,
    /// `tigerbeetle version`'s first line.
    pub version: String,
    log: PathBuf,
}

impl TigerBeetleProcess {
    /// Formats a data file in `dir` (cluster 0, one replica) and starts a replica on it.
    pub fn start(binary: &Path, dir: &Path) -> Result<TigerBeetleProcess, TigerBeetleError> {
        if !binary.is_file() {
            return Err(TigerBeetleError::BinaryMissing(binary.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|source| TigerBeetleError::Spawn {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let version = version(binary)?;
        let data = dir.join("0_0.tigerbeetle");
        let output = Command::new(binary)
            .args(["format", "--cluster=0", "--replica=0", "--replica-count=1"])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| TigerBeetleError::Spawn {
                what: format!("{} format", binary.display()),
                source,
            })?;
        if !output.status.success() {
            return Err(TigerBeetleError::Format {
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        let port = crate::machine::free_port().map_err(TigerBeetleError::Port)?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("tigerbeetle.log");
        let log_file = std::fs::File::create(&log).map_err(|source| TigerBeetleError::Spawn {
            what: format!("creating {}", log.display()),
            source,
        })?;
        let log_err = log_file
            .try_clone()
            .map_err(|source| TigerBeetleError::Spawn {
                what: "duplicating the log's handle".into(),
                source,
            })?;
        let child = Command::new(binary)
            .arg("start")
            .arg(format!("--addresses={address}"))
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|source| TigerBeetleError::Spawn {
                what: format!("{} start", binary.display()),
                source,
            })?;
        let mut replica = TigerBeetleProcess {
            child,
            address,
            version,
            log,
        };
        replica.wait_listening()?;
        Ok(replica)
    }

    /// Waits until the replica accepts a connection, or has exited, or `START_TIMEOUT`.
    fn wait_listening(&mut self) -> Result<(), TigerBeetleError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if TcpStream::connect_timeout(&self.address, START_PROBE_INTERVAL).is_ok() {
                return Ok(());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(START_PROBE_INTERVAL);
        }
        Err(TigerBeetleError::NotReady {
            address: self.address,
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the replica. Its data file is a throw-away, so it is killed, not drained.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TigerBeetleProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tigerbeetle version`'s first line, e.g. "TigerBeetle version 0.17.8".
fn version(binary: &Path) -> Result<String, TigerBeetleError> {
    let output = Command::new(binary)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TigerBeetleError::Spawn {
            what: format!("{} version", binary.display()),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .next()
        .unwrap_or("TigerBeetle")
        .trim()
        .to_string())
}
