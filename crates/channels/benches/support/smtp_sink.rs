//! A minimal SMTP server for benchmarks (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
//! counts the messages it accepts, so a figure measures the sender, not the sink. Shared by the
//! channels and deliver benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A minimal SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; counts messages.
pub async fn rust_sink(delivered: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the sink");
    let port = listener.local_addr().expect("sink address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let delivered = Arc::clone(&delivered);
            tokio::spawn(async move {
                // A client that drops the connection ends the session; nothing to report.
                let _ = session(stream, delivered).await;
            });
        }
    });
    port
}

async fn session(stream: TcpStream, delivered: Arc<AtomicU64>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 bench.sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-bench.sink\r\n250-8BITMIME\r\n250 SIZE 35882577\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                delivered.fetch_add(1, Ordering::Relaxed);
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 unknown command\r\n",
        };
        write.write_all(reply).await?;
    }
}
