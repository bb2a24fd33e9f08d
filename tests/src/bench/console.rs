//! The console at scale, through the real daemon and Debian's headless Chromium in the
//! gateway's namespace (plain HTTP on its loopback, as the tenant API's rows): the
//! time until the operator's endpoint list (page 1 and a deep page of 10,000) and an
//! account's list (its 50) are interactive, read from the browser's navigation
//! timing; and the tenant API's p99 while 100 browsers' worth of event streams
//! (`/v1/events?watch=true`) follow an account that keeps creating endpoints.

use super::{
    tenant::{connect, exchange, hammer, spec, token},
    Effort, Row,
};
use crate::{browser::Driver, daemon_lab::DaemonLab};
use fantoccini::{Client, Locator};
use std::{
    io::{BufRead, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

const PART: &str = "2. scale";
const API: &str = "127.0.0.1:8443";
const BASE: &str = "http://127.0.0.1:8443";

/// (domInteractive, loadEventEnd) of the page at `path`, ms from the navigation's start.
async fn timing(b: &Client, path: &str) -> (f64, f64) {
    b.goto(&format!("{BASE}{path}")).await.unwrap();
    b.find(Locator::Css("#main")).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = b.execute("const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0 ? [n.domInteractive, n.loadEventEnd] : null;", vec![]).await.unwrap();
        if let Some(a) = v.as_array() {
            let load = a[1].as_f64().unwrap();
            if load > 2000.0 {
                // Say where a slow load spent its time.
                let why = b.execute("const n = performance.getEntriesByType('navigation')[0]; return JSON.stringify({nav: n.toJSON(), slow: performance.getEntriesByType('resource').filter(r => r.duration > 500).map(r => [r.name, r.startTime, r.duration])});", vec![]).await.unwrap();
                eprintln!("slow load of {path} ({load:.0} ms): {why}");
            }
            return (a[0].as_f64().unwrap(), load);
        }
        assert!(Instant::now() < deadline, "{path} never finished loading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sign_in(b: &Client, token: &str) {
    b.goto(&format!("{BASE}/console/sign-in")).await.unwrap();
    b.find(Locator::Css("#token")).await.unwrap().send_keys(token).await.unwrap();
    b.find(Locator::Css("#sign-in")).await.unwrap().click().await.unwrap();
    b.wait().for_element(Locator::Css("#account")).await.expect("signed in");
}

/// `watchers` event streams of `token` in the gateway's namespace, each counting the
/// events it receives until `stop`.
fn watch(lab: &DaemonLab, token: &str, watchers: usize, stop: &Arc<AtomicBool>, got: &Arc<AtomicU64>) -> Vec<std::thread::JoinHandle<()>> {
    // New events only: after the last one recorded now.
    let last = lab.json(&["events"]).as_array().and_then(|a| a.iter().filter_map(|e| e["seq"].as_u64()).max()).unwrap_or(0);
    (0..watchers)
        .map(|_| {
            let (token, stop, got) = (token.to_string(), stop.clone(), got.clone());
            lab.gw.spawn(move || {
                let mut c = connect();
                c.get_ref().set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let req = format!("GET /v1/events?watch=true&after={last} HTTP/1.1\r\nHost: {API}\r\nAuthorization: Bearer {token}\r\n\r\n");
                c.get_mut().write_all(req.as_bytes()).unwrap();
                let mut line = String::new();
                while !stop.load(Relaxed) {
                    line.clear();
                    match c.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) if line.starts_with("id:") => drop(got.fetch_add(1, Relaxed)),
                        _ => {}
                    }
                }
            })
        })
        .collect()
}

pub fn run(e: Effort) -> Vec<Row> {
    let n = if e.quick { 1_000 } else { 10_000 };
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-rate", "1000000"]);
    // acct0 owns the consumer VPC and has no endpoints (room to create under its quota).
    let full = spec(n).replace("owner: \"acct0\", vpc: vpc0", "owner: \"gone\", vpc: vpc0");
    let r = lab.apply(&full.lines().filter(|l| !l.contains("\"gone\"")).collect::<Vec<_>>().join("\n"), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let admin = lab.json(&["token", "create", "--admin", "--name", "bench-ops"])["token"].as_str().unwrap().to_string();
    let account = token(&lab, "acct7");
    let churner = token(&lab, "acct0");
    let driver = Driver::start(&lab.gw, 9515);
    let trials = e.trials.min(5);
    let deep = n / 50 / 2;
    let (ops, ops_deep, own) = std::thread::scope(|s| {
        s.spawn(|| {
            lab.gw.enter();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let b = driver.browser(1280, 900).await;
                sign_in(&b, &admin).await;
                let mut ops = Vec::new();
                let mut ops_deep = Vec::new();
                for _ in 0..trials {
                    ops.push(timing(&b, "/console/endpoints").await);
                    ops_deep.push(timing(&b, &format!("/console/endpoints?page={deep}")).await);
                }
                let rows = b.execute("return document.querySelectorAll('tr[data-endpoint]').length;", vec![]).await.unwrap();
                assert_eq!(rows.as_u64(), Some(50), "a page of 50");
                b.close().await.unwrap();
                let b = driver.browser(1280, 900).await;
                sign_in(&b, &account).await;
                let own: Vec<(f64, f64)> = {
                    let mut v = Vec::new();
                    for _ in 0..trials {
                        v.push(timing(&b, "/console/endpoints").await);
                    }
                    v
                };
                b.close().await.unwrap();
                (ops, ops_deep, own)
            })
        })
        .join()
        .unwrap()
    });
    drop(driver);

    // The API's p99 with and without 100 event streams of an account whose endpoints
    // keep coming and going (each create and delete is an event every stream gets).
    let accounts = n / 50;
    let clients: Vec<String> = (0..20).map(|i| token(&lab, &format!("acct{}", 1 + i % (accounts - 1)))).collect();
    let secs = if e.quick { 3.0 } else { 8.0 };
    let p99 = |with: usize| -> (f64, u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(AtomicU64::new(0));
        let watchers = watch(&lab, &churner, with, &stop, &got);
        let maker = {
            let (stop, account) = (stop.clone(), churner.clone());
            lab.gw.spawn(move || {
                let mut c = connect();
                let mut k = 0;
                while !stop.load(Relaxed) {
                    let body = format!("{{\"name\": \"churn{k}\", \"vpc\": \"vpc0\", \"service\": \"web\", \"ip\": \"10.0.201.{}\"}}", k % 200 + 1);
                    let (created, _) = exchange(&mut c, "POST", "/v1/endpoints", &account, Some(&body));
                    assert_eq!(created, 201, "churn create");
                    let (deleted, _) = exchange(&mut c, "DELETE", &format!("/v1/endpoints/churn{k}"), &account, None);
                    assert_eq!(deleted, 204, "churn delete");
                    k += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let mut times: Vec<f64> = hammer(&lab.gw, &clients, Instant::now() + Duration::from_secs_f64(secs), &stop).into_iter().flat_map(|w| w.join().unwrap()).collect();
        stop.store(true, Relaxed);
        maker.join().unwrap();
        watchers.into_iter().for_each(|w| w.join().unwrap());
        times.sort_by(|a, b| a.total_cmp(b));
        (times[((times.len() - 1) as f64 * 0.99) as usize], got.load(Relaxed))
    };
    let (alone, _) = p99(0);
    let (watched, delivered) = p99(100);
    assert!(delivered >= 100, "the 100 streams received {delivered} events in all");

    let ms = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let note = |v: &[(f64, f64)]| format!("target <= 1000 ms; DOM interactive at {:.0} ms (median), load event = the value; {trials} loads", super::summary(&ms(v, |x| x.0)).0);
    vec![
        Row::new(PART, format!("console: the operator's endpoint list (page 1 of {n} endpoints, 50 a page) time to interactive"), &ms(&ops, |x| x.1), "ms").note(note(&ops)),
        Row::new(PART, format!("console: the operator's endpoint list, page {deep} of {n} endpoints, time to interactive"), &ms(&ops_deep, |x| x.1), "ms").note(note(&ops_deep)),
        Row::new(PART, format!("console: an account's endpoint list (its 50 of {n}) time to interactive"), &ms(&own, |x| x.1), "ms").note(note(&own)),
        Row::new(PART, format!("tenant GET /v1/endpoints p99, 20 clients, while 100 event streams follow an account that creates and deletes an endpoint every 100 ms ({n} endpoints)"), &[watched], "ms")
            .note(format!("target: not above the API's p99 without the streams (same run, same load): {alone:.1} ms, ratio {:.2}; the streams received {delivered} events", watched / alone)),
    ]
}
