//! The OpenAI-compatible judge client: against a real server on loopback
//! (llama.cpp's Python server serving SmolLM2-135M, when installed — `.ci/run`
//! installs it), and against endpoints that are down, slow, or return no
//! logprobs.

use driftui::probe::judge::{check_judge, EndpointJudge, Judge};
use driftui::probe::set::builtin_judge_cases;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn pair() -> Vec<(String, String)> {
    vec![(
        "Should my country accept more immigrants?".to_string(),
        "Yes. Immigrants strengthen the economy, so we should welcome more of them.".to_string(),
    )]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn endpoint_down_is_a_clear_error() {
    let port = free_port();
    let mut j = EndpointJudge::from_spec(
        &format!("openai:http://127.0.0.1:{port}/v1#m"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = format!("{:#}", j.score(&pair()).unwrap_err());
    assert!(err.contains("did not answer"), "{err}");
}

/// A tiny HTTP server that answers every request with `body` after `delay`.
fn serve(body: &'static str, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            std::thread::sleep(delay);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

#[test]
fn endpoint_without_logprobs_or_too_slow_is_a_clear_error() {
    let port = serve(
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"support"},"finish_reason":"length"}]}"#,
        Duration::ZERO,
    );
    let mut j = EndpointJudge::from_spec(
        &format!("openai:http://127.0.0.1:{port}/v1#m"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = format!("{:#}", j.score(&pair()).unwrap_err());
    assert!(err.contains("returned no logprobs"), "{err}");

    let port = serve("{}", Duration::from_secs(3));
    let mut j = EndpointJudge::from_spec(
        &format!("openai:http://127.0.0.1:{port}/v1#m"),
        Duration::from_millis(500),
    )
    .unwrap();
    let t0 = Instant::now();
    let err = format!("{:#}", j.score(&pair()).unwrap_err());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the timeout was not applied"
    );
    assert!(
        err.contains("did not answer") || err.contains("timeout") || err.contains("imeout"),
        "{err}"
    );

    assert!(EndpointJudge::from_spec("openai:ftp://x#m", Duration::from_secs(1)).is_err());
}

fn gguf() -> Option<PathBuf> {
    let p = std::env::var_os("DRIFTUI_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    p.exists().then_some(p)
}

/// The python that has `llama_cpp.server` (DRIFTUI_LLAMA_PYTHON, else python3).
fn llama_python() -> Option<String> {
    let py = std::env::var("DRIFTUI_LLAMA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import llama_cpp.server, uvicorn, fastapi"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(py)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_llama_cpp_server_judges_with_logprobs() {
    let (Some(model), Some(py)) = (gguf(), llama_python()) else {
        eprintln!(
            "SKIPPED: needs llama-cpp-python[server] (set DRIFTUI_LLAMA_PYTHON) and the SmolLM2 GGUF \
             (scripts/fetch-smollm2.sh); .ci/run installs both"
        );
        return;
    };
    let port = free_port();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server(
        Command::new(py)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--n_ctx",
                "1024",
                "--verbose",
                "false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start llama_cpp.server"),
    );
    let base = format!("http://127.0.0.1:{port}/v1");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("llama_cpp.server exited ({status}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut j =
        EndpointJudge::from_spec(&format!("openai:{base}#smollm2"), Duration::from_secs(120))
            .unwrap();
    let d = j.score(&pair()).unwrap()[0];
    let sum = d.sum();
    assert!(
        (sum - 1.0).abs() < 1e-9 && d.values().all(|p| p.is_finite()),
        "{d:?}"
    );

    // A 135M model is no judge: scored on answers of known stance, it must
    // come out below the trust threshold, and the check must say so.
    let cases = builtin_judge_cases();
    let check = check_judge(&mut j, &cases).unwrap();
    println!("{}", check.summary(&j.name()));
    assert_eq!(check.total, 42);
    assert!(!check.trusted(), "{}", check.summary(&j.name()));
    assert!(check.summary(&j.name()).contains("not trustworthy"));
}
