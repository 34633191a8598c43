//! A throw-away `kassa` node for `kassa-bench --start`: formatted in a fresh data directory,
//! started on ephemeral ports of 127.0.0.1, stopped with SIGTERM at the end, its directory
//! removed.
//!
//! Invariants: the process is never left running (dropping a [`KassaProcess`] kills it);
//! the wire address is the one the node printed in its ready line, never guessed. Called by
//! `main.rs`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stopping node may take to flush and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many lines of stdout are read while waiting for the ready line.
const READY_LINES_MAX: usize = 1_000;
/// The last this many bytes of the node's stderr are kept for error messages.
const STDERR_KEPT_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "the kassa binary was not found at {0} (build it with `cargo build --release -p \
         kassa-node --bin kassa`, or pass --kassa-bin)"
    )]
    BinaryMissing(PathBuf),
    #[error("running {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`kassa format` failed ({status}): {output}")]
    Format { status: ExitStatus, output: String },
    #[error("kassa did not print its ready line; it said:\n{0}")]
    NotReady(String),
    #[error("kassa exited with {status} when stopped; stderr:\n{stderr}")]
    Stop { status: ExitStatus, stderr: String },
}

/// The `kassa` next to this executable (where cargo puts both).
pub fn sibling_kassa() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    Some(me.parent()?.join("kassa"))
}

/// A running node.
pub struct KassaProcess {
    child: Child,
    pub wire: SocketAddr,
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl KassaProcess {
    /// Formats `data_dir` with `partitions` and `placement` (the node's defaults when `None`)
    /// and starts a node on it with `cores` core threads (one per CPU when `None`).
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        partitions: Option<u32>,
        placement: Option<&str>,
        cores: Option<u32>,
    ) -> Result<KassaProcess, NodeError> {
        if !binary.is_file() {
            return Err(NodeError::BinaryMissing(binary.to_path_buf()));
        }
        if partitions.is_some() || placement.is_some() {
            format(binary, data_dir, partitions, placement)?;
        }
        let mut command = Command::new(binary);
        command
            .args(["start", "--http-address", "127.0.0.1:0"])
            .args(["--wire-address", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cores) = cores {
            command.args(["--cores", &cores.to_string()]);
        }
        let mut child = command.spawn().map_err(|source| NodeError::Spawn {
            what: format!("{} start", binary.display()),
            source,
        })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let kept = stderr.clone();
        std::thread::spawn(move || drain_stderr(pipe, kept));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut node = KassaProcess {
            child,
            wire: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            stderr,
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = String::new();
        for line in lines.by_ref().take(READY_LINES_MAX) {
            let Ok(line) = line else { break };
            printed.push_str(&line);
            printed.push('\n');
            if let Some(wire) = ready_wire_address(&line) {
                node.wire = wire;
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(node);
            }
        }
        let _ = node.child.kill();
        let _ = node.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        Err(NodeError::NotReady(format!(
            "{printed}{}",
            node.stderr.lock().expect("stderr")
        )))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (killing it after `STOP_TIMEOUT`); a non-zero exit is an error.
    pub fn stop(mut self) -> Result<(), NodeError> {
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() < STOP_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().map_err(|source| NodeError::Spawn {
                        what: "waiting for kassa".to_string(),
                        source,
                    })?;
                }
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(NodeError::Stop {
                status,
                stderr: self.stderr.lock().expect("stderr").clone(),
            })
        }
    }
}

impl Drop for KassaProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn format(
    binary: &Path,
    data_dir: &Path,
    partitions: Option<u32>,
    placement: Option<&str>,
) -> Result<(), NodeError> {
    let mut command = Command::new(binary);
    command.arg("format");
    if let Some(partitions) = partitions {
        command.args(["--partitions", &partitions.to_string()]);
    }
    if let Some(placement) = placement {
        command.args(["--placement", placement]);
    }
    let output = command
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NodeError::Spawn {
            what: format!("{} format", binary.display()),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(NodeError::Format {
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The wire address of `kassa start`'s ready line:
/// `... HTTP API on http://ADDR, wire protocol on ADDR, ...`.
fn ready_wire_address(line: &str) -> Option<SocketAddr> {
    line.split("wire protocol on ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn drain_stderr(mut pipe: impl Read, kept: Arc<Mutex<String>>) {
    let mut buffer = [0u8; 4096];
    while let Ok(read) = pipe.read(&mut buffer) {
        if read == 0 {
            break;
        }
        let mut text = kept.lock().expect("stderr");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
        if text.len() > STDERR_KEPT_MAX {
            let cut = text.len() - STDERR_KEPT_MAX / 2;
            let cut = (cut..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            text.drain(..cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_names_the_wire_address() {
        let line = "kassa: cluster 0 ready: HTTP API on http://127.0.0.1:4000, wire protocol on \
                    127.0.0.1:4001, data in d, 2 core(s), 16 partition(s)";
        assert_eq!(
            ready_wire_address(line),
            Some("127.0.0.1:4001".parse().expect("address"))
        );
        assert_eq!(ready_wire_address("kassa: formatted d"), None);
    }
}
