//! The console in a real browser: the daemon in its gateway namespace serving the
//! console over TLS, Debian's headless Chromium driven through WebDriver, one browser
//! per account. A provider and a consumer play the seeds' quick start end to end by
//! clicking (the consumer's page turns `accepted` without a reload, a connection made
//! from the consumer's namespace shows on its graph), a third account sees none of it,
//! forged and stale forms are refused, sign-out ends the session, the Chinese locale
//! speaks the seeds' words, and every screen passes an accessibility check. Screenshots
//! of each step are saved under target/console-screens/.

use fantoccini::{key::Key, Client, Locator};
use privatelink_tests::{
    browser::{accessibility_problems, body_text, screenshot, text_of, until, Driver},
    daemon_lab::*,
    lab::*,
    pki::Pki,
};
use std::{net::SocketAddr, time::Duration};

const API: &str = "127.0.0.1:8443";
const BASE: &str = "https://127.0.0.1:8443";

fn token(lab: &DaemonLab, args: &[&str]) -> String {
    let mut a = vec!["token", "create"];
    a.extend_from_slice(args);
    lab.json(&a)["token"].as_str().expect("a token").to_string()
}

async fn css(b: &Client, sel: &str) -> fantoccini::elements::Element {
    match b.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(sel)).await {
        Ok(e) => e,
        Err(e) => panic!("no `{sel}` on the page ({e}):\n{}", page_of(b).await),
    }
}

async fn page_of(b: &Client) -> String {
    format!("{}\n{}", b.current_url().await.map(|u| u.to_string()).unwrap_or_default(), body_text(b).await)
}

async fn goto(b: &Client, path: &str) {
    b.goto(&format!("{BASE}{path}")).await.unwrap_or_else(|e| panic!("{path}: {e}"));
}

async fn path_of(b: &Client) -> String {
    b.current_url().await.map(|u| u.path().to_string()).unwrap_or_default()
}

async fn sign_in(b: &Client, token: &str, by_keyboard: bool) {
    goto(b, "/").await;
    until(b, "the sign-in page", Duration::from_secs(10), || async { path_of(b).await == "/console/sign-in" }).await;
    let field = css(b, "#token").await;
    field.send_keys(token).await.unwrap();
    if by_keyboard {
        field.send_keys(&String::from(char::from(Key::Enter))).await.unwrap();
    } else {
        css(b, "#sign-in").await.click().await.unwrap();
    }
    css(b, "#account").await;
}

async fn fill(b: &Client, field: &str, value: &str) {
    let e = css(b, &format!("#f-{field}")).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Run a script in the page that returns a promise of a value.
async fn run(b: &Client, script: &str) -> serde_json::Value {
    b.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn check_accessible(b: &Client, page: &str) {
    let problems = accessibility_problems(b).await;
    assert!(problems.is_empty(), "{page}: accessibility problems:\n{}", problems.join("\n"));
}

/// `curl` in the gateway namespace: the status code (and Location) of a request with
/// a cookie and more headers.
fn curl(lab: &DaemonLab, args: &[&str]) -> String {
    let mut a = vec!["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %header{location}"];
    a.extend_from_slice(args);
    String::from_utf8_lossy(&lab.gw.exec(&a).stdout).trim().to_string()
}

#[test]
fn a_provider_and_a_consumer_play_the_quick_start_in_two_browsers_and_a_third_sees_nothing() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("api.pem"), pki.path("api.key"));
    let lab = DaemonLab::with_daemon_args(1, &["--api-listen", API, "--api-tls-cert", &cert, "--api-tls-key", &key, "--grafana-url", "https://grafana.example/d/privatelink"]);
    let r = lab.apply(&owned_vpcs(""), &[]);
    assert_eq!(r.code, 0, "{r:#?}");
    let provider = token(&lab, &["--account", "100002", "--name", "prov"]);
    let consumer = token(&lab, &["--account", "100001", "--name", "cons"]);
    let stranger = token(&lab, &["--account", "100003", "--name", "x"]);
    let admin = token(&lab, &["--admin", "--name", "ops"]);
    let driver = Driver::start(&lab.gw, 9515);

    std::thread::scope(|s| {
        s.spawn(|| {
            lab.gw.enter();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(quick_start(&lab, &driver, &provider, &consumer, &stranger, &admin));
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

async fn quick_start(lab: &DaemonLab, driver: &Driver, provider: &str, consumer: &str, stranger: &str, admin: &str) {
    let p = driver.browser(1280, 900).await;
    let c = driver.browser(1280, 900).await;

    // Sign-in: the page, a forged token refused, then the provider's; its cookie is
    // HttpOnly, Secure and SameSite=Strict.
    goto(&p, "/").await;
    css(&p, "#token").await;
    check_accessible(&p, "sign-in").await;
    screenshot(&p, "01-sign-in").await;
    css(&p, "#token").await.send_keys("pltok_00000000_forged").await.unwrap();
    css(&p, "#sign-in").await.click().await.unwrap();
    let refused = css(&p, "#token-error").await.text().await.unwrap();
    assert!(refused.contains("not accepted"), "{refused}");
    sign_in(&p, provider, false).await;
    assert_eq!(text_of(&p, "#account").await, "100002");
    let cookie = p.get_named_cookie("pl_session").await.expect("a session cookie");
    assert_eq!((cookie.http_only(), cookie.secure(), format!("{:?}", cookie.same_site())), (Some(true), Some(true), "Some(Strict)".to_string()), "{cookie:?}");

    // The provider creates its service: a bad port mapping first, shown beside its
    // field with what was typed kept; then the right one.
    css(&p, "#create-service").await.click().await.unwrap();
    fill(&p, "name", "orders").await;
    fill(&p, "backends", "192.168.2.10\n192.168.2.11").await;
    fill(&p, "ports", "tcp 80:99999").await;
    fill(&p, "allowed_accounts", "100001").await;
    fill(&p, "description", "orders API <script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">").await;
    check_accessible(&p, "create service").await;
    css(&p, "#submit").await.click().await.unwrap();
    let error = css(&p, "#f-ports-error").await.text().await.unwrap();
    assert!(!error.is_empty(), "the port's error beside its field:\n{}", body_text(&p).await);
    assert_eq!(css(&p, "#f-ports").await.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    assert_eq!(css(&p, "#f-name").await.prop("value").await.unwrap().as_deref(), Some("orders"), "what was typed is kept");
    check_accessible(&p, "create service with errors").await;
    screenshot(&p, "02-provider-form-error").await;
    fill(&p, "ports", "tcp 80:8080").await;
    css(&p, "#submit").await.click().await.unwrap();
    until(&p, "the new service's page", Duration::from_secs(10), || async { path_of(&p).await == "/console/services/orders" }).await;
    let page = body_text(&p).await;
    assert!(page.contains("epsrv-") && page.contains("orders API <script>window.pwned = 1</script>"), "a tenant's markup is shown as text: {page}");
    assert_eq!(run(&p, "return window.pwned || null;").await, serde_json::Value::Null, "and never runs");
    screenshot(&p, "03-provider-service").await;

    // An edit: the form holds the service as it is; a change made meanwhile (through the
    // API, by another of the provider's clients) is not overwritten but said; then it
    // goes through.
    css(&p, "#edit").await.click().await.unwrap();
    assert_eq!(css(&p, "#f-ports").await.prop("value").await.unwrap().as_deref(), Some("tcp 80:8080"));
    assert_eq!(css(&p, "#f-name").await.attr("readonly").await.unwrap().as_deref(), Some("true"), "a name is not changed");
    fill(&p, "description", "orders API v2").await;
    let auth = format!("Authorization: Bearer {provider}");
    let meanwhile = curl(lab, &["-X", "PATCH", "-H", &auth, "-H", "Content-Type: application/json", "--data", r#"{"connection_limit": 2000}"#, &format!("{BASE}/v1/services/orders")]);
    assert!(meanwhile.starts_with("200"), "{meanwhile}");
    css(&p, "#submit").await.click().await.unwrap();
    let stale = css(&p, "#form-errors").await.text().await.unwrap();
    assert!(stale.contains("changed since"), "{stale}");
    goto(&p, "/console/services/orders/edit").await;
    assert_eq!(css(&p, "#f-connection_limit").await.prop("value").await.unwrap().as_deref(), Some("2000"), "the form drawn again holds the change made meanwhile");
    fill(&p, "description", "orders API v2").await;
    css(&p, "#submit").await.click().await.unwrap();
    until(&p, "the edited service's page", Duration::from_secs(10), || async { path_of(&p).await == "/console/services/orders" && body_text(&p).await.contains("orders API v2") }).await;
    assert!(body_text(&p).await.contains("2000"), "{}", body_text(&p).await);

    // The consumer finds it among the available services and creates its endpoint.
    sign_in(&c, consumer, false).await;
    goto(&c, "/console/available").await;
    css(&c, "tr[data-service=orders] a.button").await.click().await.unwrap();
    fill(&c, "name", "orders-ep").await;
    fill(&c, "ip", "10.0.0.100").await;
    check_accessible(&c, "create endpoint").await;
    screenshot(&c, "04-consumer-create-endpoint").await;
    css(&c, "#submit").await.click().await.unwrap();
    until(&c, "the new endpoint's page", Duration::from_secs(10), || async { path_of(&c).await == "/console/endpoints/orders-ep" }).await;
    assert_eq!(text_of(&c, "#endpoint [data-state]").await, "pending acceptance", "{}", body_text(&c).await);
    assert!(lab.in_client(0, || http_get(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).is_err(), "pending: no traffic yet");
    screenshot(&c, "05-consumer-pending").await;
    // A mark on this page: gone if the page were loaded again.
    run(&c, "window.plNoReload = 'still here'; return true;").await;

    // The provider accepts in its own browser.
    goto(&p, "/console/services/orders").await;
    let row = css(&p, "tr[data-endpoint=orders-ep]").await;
    assert!(row.text().await.unwrap().contains("pending acceptance"));
    check_accessible(&p, "service with a pending connection").await;
    css(&p, "button.accept[data-for=orders-ep]").await.click().await.unwrap();
    until(&p, "the connection accepted", Duration::from_secs(10), || async { text_of(&p, "tr[data-endpoint=orders-ep] [data-state]").await == "accepted" }).await;
    screenshot(&p, "06-provider-accepted").await;

    // The consumer's page turns `accepted` by itself, without a reload.
    until(&c, "`accepted` on the consumer's page", Duration::from_secs(15), || async { text_of(&c, "#endpoint [data-state]").await == "accepted" }).await;
    assert_eq!(run(&c, "return window.plNoReload || null;").await, "still here", "the page was not loaded again");
    screenshot(&c, "07-consumer-accepted").await;

    // A connection from the consumer's namespace: the count and the graph rise.
    let held = lab.in_client(0, || hold(SocketAddr::from((ENDPOINT, ENDPOINT_TCP_PORT)))).expect("the accepted endpoint carries traffic");
    until(&c, "the live count to show the connection", Duration::from_secs(20), || async { text_of(&c, "#live-count").await.parse::<u64>().unwrap_or(0) >= 1 }).await;
    let plotted = "const el = document.querySelector('.chart[data-kind=conn]'); return el && el.plot ? el.plot.data[1][el.plot.data[1].length - 1] : null;";
    until(&c, "the graph's last point to count the connection", Duration::from_secs(20), || async { run(&c, plotted).await.as_f64().unwrap_or(0.0) >= 1.0 }).await;
    check_accessible(&c, "endpoint with graphs").await;
    screenshot(&c, "08-consumer-graph").await;

    // Forged and stale forms: a made-up CSRF token, the consumer's (another session's),
    // and a valid one from another origin are all refused; the endpoint stays accepted.
    let reject = "/console/services/orders/connections/orders-ep/reject";
    let post = |csrf: &str| format!("return fetch('{reject}', {{ method: 'POST', headers: {{ 'Content-Type': 'application/x-www-form-urlencoded' }}, body: 'csrf={csrf}' }}).then(r => r.status);");
    assert_eq!(run(&p, &post("forged")).await, 403, "a forged CSRF token");
    let theirs = css(&c, "input[name=csrf]").await.attr("value").await.unwrap().unwrap();
    assert_eq!(run(&p, &post(&theirs)).await, 403, "another session's CSRF token");
    let mine = css(&p, "input[name=csrf]").await.attr("value").await.unwrap().unwrap();
    let session = p.get_named_cookie("pl_session").await.unwrap().value().to_string();
    let cookie = format!("Cookie: pl_session={session}");
    let url = format!("{BASE}{reject}");
    let data = format!("csrf={mine}");
    assert!(curl(lab, &["-H", &cookie, "-H", "Origin: https://evil.example", "--data", &data, &url]).starts_with("403"), "a valid token from another origin");
    assert_eq!(lab.endpoint("orders-ep")["state"], "accepted", "nothing forged went through");

    // Page after page with a live region: each loads (a page left behind must give its
    // event stream's connection back, or the seventh waits a minute for one).
    c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(None, Some(Duration::from_secs(15)), None)).await.unwrap();
    for i in 0..9 {
        let path = if i % 2 == 0 { "/console/endpoints" } else { "/console/endpoints/orders-ep" };
        c.goto(&format!("{BASE}{path}")).await.unwrap_or_else(|e| panic!("page {i} ({path}) did not load: {e}"));
        css(&c, "#endpoint, #endpoints").await;
    }
    goto(&c, "/console/endpoints/orders-ep").await;

    // A third account sees none of it.
    let x = driver.browser(1280, 900).await;
    sign_in(&x, stranger, true).await;
    goto(&x, "/console/available").await;
    assert!(body_text(&x).await.contains("Nothing here yet."), "{}", body_text(&x).await);
    goto(&x, "/console/services").await;
    assert!(!body_text(&x).await.contains("orders"), "{}", body_text(&x).await);
    for path in ["/console/services/orders", "/console/endpoints/orders-ep"] {
        goto(&x, path).await;
        let text = body_text(&x).await;
        assert!(text.contains("404") && !text.contains("100002"), "{path}: {text}");
    }
    screenshot(&x, "09-stranger-sees-nothing").await;

    // Keyboard: the first Tab reaches the skip link.
    goto(&x, "/console/services").await;
    css(&x, "body").await.send_keys(&String::from(char::from(Key::Tab))).await.unwrap();
    assert_eq!(x.active_element().await.unwrap().text().await.unwrap(), "Skip to content");

    // Sign-out ends the session: the page, and the cookie it had.
    css(&x, "#sign-out").await.click().await.unwrap();
    until(&x, "the sign-in page after sign-out", Duration::from_secs(10), || async { path_of(&x).await == "/console/sign-in" }).await;
    goto(&x, "/console/services").await;
    assert_eq!(path_of(&x).await, "/console/sign-in");
    let old = format!("Cookie: pl_session={session}");
    css(&p, "#sign-out").await.click().await.unwrap();
    until(&p, "the provider signed out", Duration::from_secs(10), || async { path_of(&p).await == "/console/sign-in" }).await;
    assert_eq!(curl(lab, &["-H", &old, &format!("{BASE}/console/services")]), "303 /console/sign-in", "the old cookie opens nothing");

    // The operator: nodes, VPCs with their owners, the audit trail filtered.
    sign_in(&x, admin, false).await;
    assert_eq!(path_of(&x).await, "/console/nodes");
    let nodes = body_text(&x).await;
    assert!(nodes.contains("this node") && nodes.contains("up"), "{nodes}");
    assert_eq!(css(&x, "#grafana").await.attr("href").await.unwrap().as_deref(), Some("https://grafana.example/d/privatelink"));
    check_accessible(&x, "nodes").await;
    screenshot(&x, "10-operator-nodes").await;
    goto(&x, "/console/events?kind=api.accept").await;
    let events = body_text(&x).await;
    assert!(events.contains("api.accept") && events.contains("token prov") && !events.contains("api.create"), "{events}");
    screenshot(&x, "11-operator-events").await;

    // Chinese, in the seeds' words; and at a phone's width nothing overflows.
    css(&c, "#lang").await.click().await.unwrap();
    until(&c, "the Chinese page", Duration::from_secs(10), || async { body_text(&c).await.contains("终端节点") }).await;
    let zh = body_text(&c).await;
    assert!(zh.contains("已接受") && zh.contains("终端节点服务") && zh.contains("退出"), "{zh}");
    check_accessible(&c, "endpoint in Chinese").await;
    screenshot(&c, "12-consumer-zh").await;
    c.set_window_size(390, 844).await.unwrap();
    goto(&c, "/console/endpoints").await;
    let overflow = run(&c, "return document.documentElement.scrollWidth - window.innerWidth;").await.as_i64().unwrap_or(999);
    assert!(overflow <= 0, "the page is {overflow} px wider than a 390 px screen");
    screenshot(&c, "13-consumer-390px").await;

    // Delete, after the consoles' question.
    drop(held);
    c.set_window_size(1280, 900).await.unwrap();
    goto(&c, "/console/lang?to=en&back=/console/endpoints/orders-ep").await;
    css(&c, "#delete").await.click().await.unwrap();
    until(&c, "the consoles' question before a delete", Duration::from_secs(10), || async { body_text(&c).await.contains("Delete orders-ep?") }).await;
    css(&c, "#confirm").await.click().await.unwrap();
    until(&c, "the endpoint list", Duration::from_secs(10), || async { path_of(&c).await == "/console/endpoints" }).await;
    assert!(!body_text(&c).await.contains("orders-ep"));
    assert!(!lab.ok(&["get", "endpoints"]).contains("orders-ep"), "deleted for real");

    // The language switch goes back only to a page of the console.
    for back in ["//evil.example/", "https://evil.example/", "/console/..//evil.example"] {
        let url = format!("{BASE}/console/lang?to=zh&back={}", back.replace('/', "%2F"));
        assert_eq!(curl(lab, &[&url]), "303 /console/", "back={back}");
    }

    // A session ends with its token: revoked by root, the next page is the sign-in.
    let id = lab.json(&["token", "list"]).as_array().unwrap().iter().find(|t| t["name"] == "cons").unwrap()["id"].as_str().unwrap().to_string();
    lab.ok(&["token", "revoke", &id]);
    goto(&c, "/console/endpoints").await;
    assert_eq!(path_of(&c).await, "/console/sign-in", "a revoked token's session is over");

    for b in [p, c, x] {
        b.close().await.unwrap();
    }
}
