use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::engine::{ControlRequest, ControlResponse, control_request};
use crate::server::{Limits, bind, serve};

fn limits() -> Limits {
    Limits {
        max_request_bytes: 1024,
        request_timeout: Duration::from_millis(300),
        max_connections: 2,
    }
}

async fn echo_server(dir: &std::path::Path) -> (std::path::PathBuf, tokio::task::JoinHandle<()>) {
    let path = dir.join("run/engine.sock");
    let l = bind(&path, 0o660).unwrap();
    let task = serve(l, limits(), |req: ControlRequest| async move {
        match req {
            ControlRequest::Ping => ControlResponse::ok("pong"),
            ControlRequest::Delete { id, actor, source } => {
                ControlResponse::ok(format!("{id} {actor} {source}"))
            }
            _ => ControlResponse::err("no"),
        }
    });
    (path, task)
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _task) = echo_server(dir.path()).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let p = path.clone();
    let r = blocking(move || {
        control_request(
            &p,
            &ControlRequest::Delete {
                id: "Q".into(),
                actor: "alice".into(),
                source: "10.0.0.1".into(),
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(r.ok);
    assert_eq!(r.message, "Q alice 10.0.0.1");

    // Several requests on one connection; garbage gets an error, not a hang-up.
    let p = path.clone();
    let lines = blocking(move || {
        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(b"{\"cmd\":\"ping\"}\nnot json\n{\"cmd\":\"ping\"}\n")
            .unwrap();
        let mut r = BufReader::new(s);
        (0..3)
            .map(|_| {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                serde_json::from_str::<ControlResponse>(&l).unwrap()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(lines[0].ok && !lines[1].ok && lines[2].ok);
    assert!(lines[1].message.starts_with("bad request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_requests_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _task) = echo_server(dir.path()).await;
    let reply = blocking(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        // Far more than the limit, and no newline: the server must not wait for one.
        let _ = s.write_all(&vec![b'x'; 64 * 1024]);
        let mut l = String::new();
        BufReader::new(s).read_line(&mut l).unwrap();
        l
    })
    .await
    .unwrap();
    let r: ControlResponse = serde_json::from_str(&reply).unwrap();
    assert!(!r.ok && r.message.contains("longer than 1024"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _task) = echo_server(dir.path()).await;
    let took = blocking(move || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":").unwrap();
        let start = Instant::now();
        let mut rest = Vec::new();
        // The server closes: read returns EOF rather than blocking forever.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        start.elapsed()
    })
    .await
    .unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _task) = echo_server(dir.path()).await;
    let held: Vec<_> = (0..2)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p = path.clone();
    let r = blocking(move || control_request(&p, &ControlRequest::Ping))
        .await
        .unwrap()
        .unwrap();
    assert!(!r.ok && r.message.contains("too many"), "{r:?}");
    drop(held);
    // Once the held connections are closed (or timed out), requests are served again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = blocking(move || control_request(&path, &ControlRequest::Ping))
        .await
        .unwrap()
        .unwrap();
    assert!(r.ok);
}

#[test]
fn nobody_listening_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let e = control_request(&dir.path().join("engine.sock"), &ControlRequest::Ping).unwrap_err();
    assert!(e.is_not_running(), "{e}");
    // A socket file left behind by a process that is gone.
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let e = control_request(&path, &ControlRequest::Ping).unwrap_err();
    assert!(e.is_not_running(), "{e}");
}
