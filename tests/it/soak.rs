//! A bounded soak test of the `serve` binary on loopback: concurrent stateful sessions sending a
//! mix of valid, tampered, unknown-kid and expired tokens for SOAK_SECONDS (default 60). It
//! asserts zero wrong verdicts, zero 5xx and a bounded resident set, and prints the figures.
//!
//! Not part of the default run (it takes a minute). Run it with:
//!
//! ```text
//! cargo nextest run --run-ignored only -E 'test(soak)' --no-capture
//! # or: cargo test --test it soak -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const SESSIONS: usize = 16;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    wrong: AtomicU64,
    server_errors: AtomicU64,
}

/// The resident set of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What a token should get.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Valid,
    Tampered,
    UnknownKid,
    Expired,
}

async fn open_session(client: &reqwest::Client, url: &str, token: &str) -> String {
    let init = http_post(url, Some(token), &initialize()).await;
    assert_eq!(init.status, 200, "initialize: {}", init.body);
    let session = init.header("mcp-session-id").unwrap().to_owned();
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    session
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a 60 s soak; run with --run-ignored only -E 'test(soak)'"]
async fn soak_mixed_tokens_across_concurrent_sessions() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = Server::start(&["--sk-env-url", &jwks.url(), "--audience", AUDIENCE]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let pid = server.child.id();
    let url = server.url("/");
    let claims = |overrides: Value| {
        let mut claims = good_claims();
        claims["iss"] = json!(jwks.url());
        for (key, value) in overrides.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    // 200 distinct valid tokens (a fresh signature check each, then cached), and refusals.
    let mut tokens: Vec<(Kind, String)> = Vec::new();
    for i in 0..200 {
        tokens.push((
            Kind::Valid,
            mint(&claims(json!({"jti": format!("soak-{i}")}))),
        ));
    }
    for i in 0..50 {
        let good = mint(&claims(json!({"jti": format!("tampered-{i}")})));
        let (head, _) = good.rsplit_once('.').unwrap();
        let forged = mint_with(&claims(json!({"sub": "admin"})), "b", Some("key-a"));
        tokens.push((
            Kind::Tampered,
            format!("{head}.{}", forged.rsplit('.').next().unwrap()),
        ));
        tokens.push((
            Kind::UnknownKid,
            mint_with(&claims(json!({})), "a", Some(&format!("kid-{i}"))),
        ));
        tokens.push((
            Kind::Expired,
            mint(&claims(json!({"exp": now() - 120 - i}))),
        ));
    }
    let tokens = Arc::new(tokens);
    let tally = Arc::new(Tally::default());
    let client = reqwest::Client::new();
    let warm_token = tokens[0].1.clone();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(open_session(&client, &url, &warm_token).await);
    }
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for (worker, session) in sessions.into_iter().enumerate() {
        let (client, url, tokens, tally) =
            (client.clone(), url.clone(), tokens.clone(), tally.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker * 7919;
            while Instant::now() < deadline {
                i += 1;
                let (kind, token) = &tokens[i % tokens.len()];
                let name = format!("w{worker}-{i}");
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(token)
                    .header("mcp-session-id", &session)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .body(call_greet(&name).to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                latencies.push(sent.elapsed());
                tally.requests.fetch_add(1, Ordering::Relaxed);
                if status >= 500 {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                let greeted = body.contains(&format!("Hi {name}, welcome"));
                let right = match kind {
                    Kind::Valid => status == 200 && greeted,
                    _ => status == 401 && !greeted,
                };
                if *kind == Kind::Valid {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
                if !right {
                    tally.wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!("wrong verdict for a {kind:?} token: {status} {body:.200}");
                }
            }
            latencies
        });
    }
    let mut rss_max = rss_start;
    let mut latencies = Vec::new();
    let sampler = async {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_max = rss_max.max(rss_kib(pid));
        }
    };
    let ((), results) = tokio::join!(sampler, async {
        let mut all = Vec::new();
        while let Some(result) = workers.join_next().await {
            all.push(result.unwrap());
        }
        all
    });
    for result in results {
        latencies.extend(result);
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib(pid);
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let requests = tally.requests.load(Ordering::Relaxed);
    eprintln!(
        "soak: {requests} requests in {:.1} s ({:.0}/s) over {SESSIONS} sessions; {} valid, {} refused; \
         wrong verdicts {}, 5xx {}; latency p50 {:?} p99 {:?} max {:?}; \
         RSS start {} KiB, max {} KiB, end {} KiB; JWKS fetches {}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        tally.accepted.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
        tally.server_errors.load(Ordering::Relaxed),
        percentile(0.5),
        percentile(0.99),
        latencies.last().unwrap(),
        rss_start,
        rss_max,
        rss_end,
        jwks.hits(),
    );
    assert_eq!(tally.wrong.load(Ordering::Relaxed), 0, "wrong verdicts");
    assert_eq!(
        tally.server_errors.load(Ordering::Relaxed),
        0,
        "5xx answers"
    );
    assert!(requests > 0);
    assert!(
        rss_max < rss_start + 64 * 1024,
        "RSS grew from {rss_start} KiB to {rss_max} KiB"
    );
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
