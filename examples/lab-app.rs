//! The failover lab's application (scripts/failover-lab.sh starts it): a tiny HTTP service
//! that, like a real application after a reload, reads `DATABASE_URL` and `STORAGE_URL` from
//! its env file on every request.
//!
//! `GET /health` answers 200 with what it reached when the database answers, is a primary
//! and takes writes (it inserts a row into `lab_health`), and the storage holds `health.txt`;
//! 503 with the reason otherwise. It also stands in for the chat webhook and the status page:
//! a POST, PATCH or PUT under `/messages/` is logged and answered `{"id": "lab-incident"}`.
//!
//! Usage: `lab-app --env-file FILE --listen 127.0.0.1:PORT` (S3 settings from the environment,
//! as for drillbook).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut env_file = None;
    let mut listen = "127.0.0.1:8080".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => env_file = args.next().map(PathBuf::from),
            "--listen" => listen = args.next().unwrap_or(listen),
            other => {
                eprintln!("lab-app: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let Some(env_file) = env_file else {
        eprintln!("usage: lab-app --env-file FILE [--listen ADDRESS]");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("lab-app: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "lab-app: listening on {listen}, reading {}",
        env_file.display()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let env_file = env_file.clone();
        tokio::spawn(async move { serve(stream, &env_file).await });
    }
}

async fn serve(mut stream: TcpStream, env_file: &Path) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 && request.len() < 64 * 1024 => {
                request.extend_from_slice(&buffer[..n])
            }
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length.min(1024 * 1024) {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (status, body) = match (method, path) {
        ("GET", "/health") => match health(env_file).await {
            Ok(body) => ("200 OK", body),
            Err(reason) => (
                "503 Service Unavailable",
                format!("{{\"error\": {reason:?}}}"),
            ),
        },
        // The lab's chat webhook and status page: messages are logged, as a channel shows them.
        ("POST" | "PATCH" | "PUT", path) if path.starts_with("/messages/") => {
            let message = String::from_utf8_lossy(&request[head_end..]);
            eprintln!("lab-app: {method} {path}: {message}");
            ("201 Created", "{\"id\": \"lab-incident\"}".to_string())
        }
        _ => ("404 Not Found", "{}".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

async fn health(env_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(env_file)
        .map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
    let env: BTreeMap<&str, &str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let database = env.get("DATABASE_URL").ok_or("DATABASE_URL is not set")?;
    let storage = env.get("STORAGE_URL").ok_or("STORAGE_URL is not set")?;

    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(database, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "the database did not answer within 5 s".to_string())?
    .map_err(|e| format!("database: {e}"))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('port')::int, pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(|e| format!("database: {e}"))?;
    let (port, in_recovery): (i32, bool) = (row.get(0), row.get(1));
    if in_recovery {
        return Err(format!("the database on port {port} is a standby"));
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS lab_health (at timestamptz NOT NULL DEFAULT now());
             INSERT INTO lab_health DEFAULT VALUES",
        )
        .await
        .map_err(|e| format!("the database on port {port} refuses writes: {e}"))?;

    let store = drillbook::connect::store::Store::open(storage)
        .await
        .map_err(|e| format!("storage: {e}"))?;
    let probe = store
        .get_bytes("health.txt")
        .await
        .map_err(|e| format!("storage {storage}: {e}"))?;
    Ok(format!(
        "{{\"database_port\": {port}, \"storage\": {storage:?}, \"probe\": {:?}}}",
        String::from_utf8_lossy(&probe).trim()
    ))
}
