//! Goal: the documentation cannot drift from the code. Method, over README.md and docs/*.md:
//! - every guide the README promises exists, the README stays short (at most 300 lines) and
//!   names the run command in its first 60;
//! - every relative link resolves to a file of the repository;
//! - a fenced block whose info string is `<lang> file=PATH` holds exactly the text of PATH (the
//!   client quick starts, which the client test suites run);
//! - a fenced block whose info string is `sh session` runs in bash against a fresh in-memory
//!   server (`localhost:15500` pointed at it), and each command's output must match the `# `
//!   lines that follow it, where `…` stands for any run of characters.
//!
//! The Rust quick starts are run here too: the producer queues three tasks and the worker
//! takes and acks all three.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use synap_tests::client_harness::client_example;
use synap_tests::server_harness::Server;

/// The guides of docs/, each linked from the README.
const GUIDES: &[&str] = &[
    "getting-started.md",
    "api.md",
    "configuration.md",
    "operations.md",
    "clients.md",
    "simulator.md",
    "web-app.md",
    "benchmarks.md",
    "architecture.md",
    "testing.md",
    "compatibility.md",
    "securing.md",
    "tracking-jobs.md",
    "cluster.md",
    "controlling-throughput.md",
    "pipelines-with-flows.md",
];

const RUN_COMMAND: &str = "cargo run --release -p synap-server";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// README.md and every markdown file of docs/, as (path, text).
fn documents() -> Vec<(PathBuf, String)> {
    let root = root();
    let mut paths = vec![root.join("README.md")];
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guides.sort();
    paths.extend(guides);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read a document");
            (p, text)
        })
        .collect()
}

/// A fenced code block: its info string, its body and the line it starts on (1-based).
struct Block {
    info: String,
    body: String,
    line: usize,
}

/// The fenced blocks of a markdown text (``` or ~~~ fences, at most three spaces indented).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(String, String, usize, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if indent <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
                    let ch = &trimmed[..1];
                    let fence_len = trimmed.len() - trimmed.trim_start_matches(ch).len();
                    let fence = ch.repeat(fence_len);
                    let info = trimmed[fence_len..].trim().to_string();
                    open = Some((fence, info, n + 1, Vec::new()));
                }
            }
            Some((fence, _, _, body)) => {
                if trimmed.starts_with(fence.as_str())
                    && trimmed.trim_start_matches(&fence[..1]).trim().is_empty()
                {
                    let (_, info, start, body) = open.take().expect("open block");
                    out.push(Block {
                        info,
                        body: body.join("\n"),
                        line: start,
                    });
                } else {
                    body.push(line);
                }
            }
        }
    }
    out
}

/// The text outside fenced blocks and inline code spans, where links live.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        match &fenced {
            None if t.starts_with("```") || t.starts_with("~~~") => {
                let ch = &t[..1];
                let len = t.len() - t.trim_start_matches(ch).len();
                fenced = Some(ch.repeat(len));
            }
            None => {
                // Drop inline code spans: `[a](b)` inside backticks is not a link.
                let mut in_code = false;
                for c in line.chars() {
                    if c == '`' {
                        in_code = !in_code;
                    } else if !in_code {
                        out.push(c);
                    }
                }
                out.push('\n');
            }
            Some(f) => {
                if t.starts_with(f.as_str()) && t.trim_start_matches(&f[..1]).trim().is_empty() {
                    fenced = None;
                }
            }
        }
    }
    out
}

/// Link targets of a markdown text: inline `[text](target)`, images, and reference
/// definitions `[name]: target`.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let bytes = prose.as_bytes();
    let mut i = 0;
    while let Some(at) = prose[i..].find("](") {
        let start = i + at + 2;
        let mut depth = 1;
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b'\n' => break,
                _ => {}
            }
            end += 1;
        }
        let target = prose[start..end].trim();
        // `[text](url "title")`: the url is the first word.
        let target = target.split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(['<', '>']).to_string());
        i = end.max(start);
    }
    for line in prose.lines() {
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some(close) = t.find("]:")
        {
            let target = t[close + 2..].split_whitespace().next().unwrap_or("");
            out.push(target.to_string());
        }
    }
    out
}

/// Whether a link leaves the repository (a URL with a scheme) or stays on the page.
fn is_external(target: &str) -> bool {
    target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:")
}

#[test]
fn every_guide_exists_and_the_readme_is_short() {
    let root = root();
    for g in GUIDES {
        assert!(root.join("docs").join(g).is_file(), "docs/{g} is missing");
    }
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300");
    let first = readme.lines().take(60).collect::<Vec<_>>().join("\n");
    assert!(
        first.contains(RUN_COMMAND),
        "README.md must name `{RUN_COMMAND}` in its first 60 lines"
    );
    for g in GUIDES {
        assert!(
            readme.contains(&format!("docs/{g}")),
            "README.md does not link docs/{g}"
        );
    }
    for (path, text) in documents() {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            first.starts_with("# "),
            "{} does not start with a title",
            path.display()
        );
    }
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for (path, text) in documents() {
        let dir = path.parent().expect("document folder");
        for target in link_targets(&text) {
            if is_external(&target) {
                continue;
            }
            let file = target.split('#').next().unwrap_or("");
            let file = file.split('?').next().unwrap_or("");
            if file.is_empty() {
                continue;
            }
            let resolved = dir.join(file);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|p| p.starts_with(root().canonicalize().expect("root")));
            if !inside {
                broken.push(format!("{}: {target}", path.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that do not resolve to a file of the repository:\n{}",
        broken.join("\n")
    );
}

#[test]
fn included_files_match_their_source() {
    let root = root();
    let mut checked = 0;
    let mut drift = Vec::new();
    for (path, text) in documents() {
        for b in blocks(&text) {
            let Some(file) = b
                .info
                .split_whitespace()
                .find_map(|w| w.strip_prefix("file="))
            else {
                continue;
            };
            let source = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("{}:{}: {file}: {e}", path.display(), b.line));
            checked += 1;
            if source.trim_end() != b.body.trim_end() {
                drift.push(format!(
                    "{}:{}: the block differs from {file}",
                    path.display(),
                    b.line
                ));
            }
        }
    }
    assert!(drift.is_empty(), "{}", drift.join("\n"));
    // The README's quick starts: a producer and a worker in each of the three languages.
    assert!(checked >= 6, "only {checked} included blocks found");
}

/// One command of a session and the output documented after it.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn steps(body: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut continuing = false;
    for line in body.lines() {
        if continuing {
            let step = out.last_mut().expect("a command being continued");
            step.command.push('\n');
            step.command.push_str(line);
            continuing = line.trim_end().ends_with('\\');
        } else if let Some(rest) = line.strip_prefix('#') {
            // Output lines belong to the command before them; leading ones are comments.
            if let Some(step) = out.last_mut() {
                step.expected
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            }
        } else if !line.trim().is_empty() {
            out.push(Step {
                command: line.to_string(),
                expected: Vec::new(),
            });
            continuing = line.trim_end().ends_with('\\');
        }
    }
    out
}

/// Whether `text` matches `pattern`, where `…` stands for any run of characters.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = parts.split_first().expect("parts");
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().expect("parts");
    for part in middle {
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

#[test]
fn curl_sessions_run_as_documented() {
    let mut sessions = 0;
    for (path, text) in documents() {
        for b in blocks(&text).into_iter().filter(|b| b.info == "sh session") {
            sessions += 1;
            let server = Server::start_with(synap_tests::server_harness::Options {
                args: vec!["--no-rpc".into()],
                ..Default::default()
            });
            let host = server.addr.to_string();
            let steps = steps(&b.body);
            assert!(
                !steps.is_empty(),
                "{}:{}: empty session",
                path.display(),
                b.line
            );
            // One bash for the whole session (variables carry over), a marker between commands.
            let mut script = String::from("set -e\n");
            for (i, s) in steps.iter().enumerate() {
                script.push_str(&s.command.replace("localhost:15500", &host));
                script.push_str(&format!("\necho '@@step {i}@@'\n"));
            }
            let out = Command::new("bash")
                .arg("-c")
                .arg(&script)
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .output()
                .expect("run bash");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}:{}: the session failed ({}):\n{stdout}\n{}",
                path.display(),
                b.line,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let mut rest: &str = &stdout;
            for (i, s) in steps.iter().enumerate() {
                let marker = format!("@@step {i}@@\n");
                let at = rest.find(&marker).expect("step marker");
                let got = rest[..at].trim();
                rest = &rest[at + marker.len()..];
                if s.expected.is_empty() {
                    continue;
                }
                let want = s.expected.join("\n");
                assert!(
                    matches(want.trim(), got),
                    "{}:{}: `{}` printed\n{got}\nwhere the document shows\n{want}",
                    path.display(),
                    b.line,
                    s.command
                );
            }
        }
    }
    assert!(sessions >= 1, "no `sh session` block in the documents");
}

#[tokio::test]
async fn the_rust_quick_start_publishes_and_works() {
    let server = Server::start_with(synap_tests::server_harness::Options {
        args: vec!["--no-rpc".into()],
        ..Default::default()
    });
    let url = server.url("");
    let run = |name: &str| {
        let out = Command::new(client_example(name))
            .env("SYNAP_URL", &url)
            .stdin(Stdio::null())
            .output()
            .expect("run the example");
        assert!(
            out.status.success(),
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    };
    let produced = run("quickstart_producer");
    assert_eq!(
        produced
            .lines()
            .filter(|l| l.starts_with("queued video "))
            .count(),
        3,
        "{produced}"
    );
    let worked = run("quickstart_worker");
    let mut videos: Vec<&str> = worked
        .lines()
        .filter_map(|l| l.strip_prefix("transcoding video "))
        .collect();
    videos.sort_unstable();
    assert_eq!(videos, ["1", "2", "3"], "{worked}");
    let synap = synap_client::SynapClient::connect(&url)
        .await
        .expect("connect");
    let stats = synap.queue_stats("video-processing").await.expect("stats");
    assert_eq!(stats.acked_total, 3, "{stats:?}");
    assert_eq!(stats.depth, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
}

#[test]
fn the_session_matcher_is_strict() {
    assert!(matches("{\"a\":…,\"b\":1}", "{\"a\":\"x\",\"b\":1}"));
    assert!(!matches("{\"a\":…,\"b\":1}", "{\"a\":\"x\",\"b\":2}"));
    assert!(matches("plain", "plain"));
    assert!(!matches("plain", "plain!"));
    assert!(matches("…", "anything"));
    let s = steps("# a comment\ncurl a \\\n  b\n# out\necho c\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].command, "curl a \\\n  b");
    assert_eq!(s[0].expected, ["out"]);
    assert!(s[1].expected.is_empty());
    let links = link_targets("see [x](a.md#h) and `[y](no.md)` and ![i](p.png \"t\")\n[r]: c.md\n");
    assert_eq!(links, ["a.md#h", "p.png", "c.md"]);
}
