//! `local-stack dev` ends cleanly: on SIGTERM (what `infra/with-moto.sh` sends on Ctrl-C) it
//! stops at once, and when the emulator dies it exits with an error that says so instead of
//! polling a dead endpoint forever. Each test starts its own emulator and stack.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Running {
    emulator: Child,
    stack: Child,
    _dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stack.kill();
        let _ = self.emulator.kill();
        let _ = self.stack.wait();
        let _ = self.emulator.wait();
    }
}

/// An emulator and `local-stack dev` on it, once the stack says it is ready.
fn start(label: &str) -> Running {
    let port = free_port();
    let emulator = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("infra/emulator.py"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("dev-{label}-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the emulator never listened");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut stack = Command::new(env!("CARGO_BIN_EXE_local-stack"))
        .args(["dev", "--port", "0"])
        .current_dir(&dir)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("local-stack dev");
    let mut out = BufReader::new(stack.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read");
        assert!(n > 0, "local-stack dev ended before it was ready");
        if line.contains("Local stack ready") {
            break;
        }
    }
    // Keep draining what it prints, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Running {
        emulator,
        stack,
        _dir: dir,
    }
}

/// Waits up to `seconds` for the process to end; its exit status.
fn ended(child: &mut Child, seconds: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn sigterm_stops_the_dev_stack_at_once() {
    let mut r = start("term");
    let pid = r.stack.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = ended(&mut r.stack, 10).expect("still running 10 s after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn a_dead_emulator_stops_the_dev_stack_with_a_clear_message() {
    let mut r = start("dead");
    r.emulator.kill().expect("kill the emulator");
    let _ = r.emulator.wait();
    let status = ended(&mut r.stack, 30).expect("still running 30 s after the emulator died");
    assert!(!status.success(), "{status}");
    let mut err = String::new();
    r.stack
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(err.contains("stopped answering"), "{err}");
}
