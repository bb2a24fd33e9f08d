//! The console's browser tests: Debian's ChromeDriver and headless Chromium, started
//! inside a test's namespace (where the daemon's listener is), driven through
//! WebDriver (fantoccini) from a thread that entered that namespace. Each `browser`
//! is a Chromium of its own (its own profile: its own cookies). Screenshots go to
//! `target/console-screens/`. Everything started is stopped on drop, also on a panic.

use crate::netns::{Background, Netns};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::{path::PathBuf, time::Duration};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Driver {
    proc: Option<Background>,
    port: u16,
    /// Every browser profile of this driver lives under it.
    profiles: PathBuf,
    next: std::sync::atomic::AtomicU32,
}

impl Driver {
    /// ChromeDriver on 127.0.0.1:`port` inside `ns` (it fails the test when Chromium or
    /// ChromeDriver is missing: `cargo xtask setup` installs them).
    pub fn start(ns: &Netns, port: u16) -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(std::path::Path::new(bin).exists(), "{bin} is missing: run `cargo xtask setup` (Debian's chromium and chromium-driver)");
        }
        let profiles = PathBuf::from(format!("/tmp/pltest{}-chrome-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profiles);
        std::fs::create_dir_all(&profiles).unwrap();
        let proc = ns.background(&[CHROMEDRIVER, &format!("--port={port}"), "--allowed-ips=127.0.0.1"]);
        Driver { proc: Some(proc), port, profiles, next: Default::default() }
    }

    /// A new headless Chromium of `width` x `height` (call from a thread inside the
    /// driver's namespace), once the driver answers.
    pub async fn browser(&self, width: u32, height: u32) -> Client {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = self.profiles.join(format!("p{n}"));
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            // The test's CA is not in Chromium's store; the chain itself is checked by
            // the API tests (curl with --cacert).
            "--ignore-certificate-errors".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--lang=en-US".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args, "prefs": { "intl.accept_languages": "en-US,en" } },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => {
                    c.set_window_size(width, height).await.expect("window size");
                    return c;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no browser session from ChromeDriver on {url}: {e}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.proc.take();
        // Browsers the driver started and did not stop (a panicking test's).
        let _ = std::process::Command::new("pkill").args(["-KILL", "-f", &self.profiles.display().to_string()]).status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// Where screenshots go: `target/console-screens/` of the workspace.
pub fn screens_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Save what the browser shows as `target/console-screens/NAME.png`.
pub async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let path = screens_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Wait until `f` says yes (polling), or fail saying what was awaited and what the
/// page shows.
pub async fn until<F, Fut>(c: &Client, what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !f().await {
        if std::time::Instant::now() > deadline {
            let text = body_text(c).await;
            panic!("waited {within:?} for {what}; the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a person reads on the page.
pub async fn body_text(c: &Client) -> String {
    match c.find(Locator::Css("body")).await {
        Ok(b) => b.text().await.unwrap_or_default(),
        Err(e) => format!("(no body: {e})"),
    }
}

pub async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// An accessibility check of the page as drawn: every form control has a label (its
/// `<label>`, `aria-label`, or a button's text), and every piece of visible text has
/// a contrast of at least 4.5:1 against the background it is drawn on (WCAG 2 AA),
/// computed from the styles in effect. What fails, one line each.
pub async fn accessibility_problems(c: &Client) -> Vec<String> {
    const CHECK: &str = r#"
const problems = [];
for (const el of document.querySelectorAll('input, select, textarea, button')) {
  if (el.type === 'hidden') continue;
  const label = (el.labels && el.labels.length ? el.labels[0].textContent : '') || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' ? el.textContent : '');
  if (!label.trim()) problems.push('no label: ' + el.outerHTML.slice(0, 100));
}
const rgba = s => (s.match(/[\d.]+/g) || []).map(Number);
const lum = c => {
  const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = el => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c;
  }
  return [255, 255, 255];
};
for (const el of document.body.querySelectorAll('*')) {
  const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length) continue;
  const r = el.getBoundingClientRect();
  if (r.right < 0 || r.bottom < 0 || r.width === 0) continue;
  const st = getComputedStyle(el);
  if (st.visibility === 'hidden' || st.opacity === '0' || el.closest('.visually-hidden, .u-legend')) continue;
  const fg = rgba(st.color), bg = background(el);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' for "' + el.textContent.trim().slice(0, 40) + '" (' + st.color + ' on rgb(' + bg.join(',') + '))');
}
return problems;
"#;
    let v = c.execute(CHECK, vec![]).await.expect("the accessibility check runs");
    v.as_array().map(|a| a.iter().map(|p| p.as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
}
