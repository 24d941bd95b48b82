//! `modeconn health`: asks a running server whether it is ready (or live), for container health
//! checks in images that have no HTTP client of their own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Arguments of `health`.
#[derive(clap::Args)]
pub struct Args {
    /// The server's host.
    #[arg(long, default_value = "127.0.0.1", env = "MODECONN_HEALTH_HOST")]
    host: String,
    /// The server's port.
    #[arg(long, default_value_t = 8000, env = "MODECONN_PORT")]
    port: u16,
    /// Ask whether the server is live rather than ready (ready: it takes inference requests).
    #[arg(long)]
    live: bool,
    /// Milliseconds to wait for the answer.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
}

/// The status code of an HTTP/1 response's first line.
fn status_of(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Runs `health`: exit status 0 when the server answers 200, else 1 with the reason.
pub fn run(args: Args) -> anyhow::Result<()> {
    let path = if args.live {
        "/v2/health/live"
    } else {
        "/v2/health/ready"
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let address: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: no address", args.host))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| anyhow::anyhow!("cannot connect to {address}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.host
    )?;
    let mut head = Vec::new();
    // The status line and headers are all that is needed; read until the blank line.
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut byte)? {
            0 => break,
            _ => head.push(byte[0]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    match status_of(&head) {
        Some(200) => {
            println!("{address}{path}: 200");
            Ok(())
        }
        Some(code) => anyhow::bail!("{address}{path} answered {code}"),
        None => anyhow::bail!("{address}{path} did not answer HTTP"),
    }
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn the_status_is_read_from_the_first_line() {
        assert_eq!(status_of("HTTP/1.1 200 OK\r\nx: y\r\n\r\n"), Some(200));
        assert_eq!(status_of("HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(""), None);
    }
}
