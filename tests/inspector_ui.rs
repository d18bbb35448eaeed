//! The inspector web UI in a real browser: headless Chromium driven over WebDriver against the real server,
//! seeded through the intake API. Sessions with their queue counts, sorting, filters and pages; retry and
//! abort in the queue; live updates without a reload; the lost-connection banner across a restart; empty
//! states; and a screenshot of every view (light and dark) under `tests/artifacts/ui/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`make test` installs them); fails without them.

#[path = "support/fake_llm.rs"]
mod fake_llm;
mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestServer, observation, wait_for};
use webdriver::{Browser, key};

/// Generous: a page load plus a fetch on a busy two-core machine.
const UI: Duration = Duration::from_secs(15);

/// One browser at a time: two Chromiums on two cores make every timing assertion a coin toss.
fn one_browser_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Opens the inspector at `hash`, signed in as `memtray open` does, and waits until `view` has drawn its data.
fn open(browser: &Browser, server: &TestServer, hash: &str, view: &str) {
    browser.goto(&server.url(&format!("/?token={}{hash}", server.secret())));
    wait_ready(browser, view);
}

fn wait_ready(browser: &Browser, view: &str) {
    browser.wait_for(UI, &format!("the {view} view to render"), &format!("document.body.dataset.ready === '{view}'"));
}

/// The JS string literal of `text`.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The visible text of the page's main area.
fn main_text(browser: &Browser) -> String {
    browser.eval("document.getElementById('main').innerText").as_str().unwrap_or_default().to_string()
}

/// The sessions table's rows as {project, session, status, prompts, queue}.
fn session_rows(browser: &Browser) -> Vec<Value> {
    browser
        .eval(
            "[...document.querySelectorAll('table.sessions tbody tr')].map(tr => ({
                project: tr.querySelector('.project').textContent,
                status: tr.querySelector('.status').textContent,
                prompts: tr.querySelector('.prompts').textContent,
                queue: tr.querySelector('.queue').textContent,
            }))",
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn projects_in_order(browser: &Browser) -> Vec<String> {
    session_rows(browser).iter().map(|r| r["project"].as_str().unwrap_or_default().to_string()).collect()
}

/// Saves a PNG of the viewport under `tests/artifacts/ui/`.
fn screenshot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts/ui");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn session_id(server: &TestServer, agent_session_id: &str) -> i64 {
    server.count(&format!("SELECT id FROM sessions WHERE agent_session_id = '{agent_session_id}'"))
}

fn init(server: &TestServer, session: &str, project: &str, prompt: &str) {
    let (status, answer) =
        server.post("/api/sessions/init", &json!({"claudeSessionId": session, "project": project, "prompt": prompt}));
    assert_eq!(status, 200, "{answer}");
}

fn observe(server: &TestServer, session: &str, tool_use_id: &str, tool: &str, project: &str) -> i64 {
    let mut body = observation(session, tool_use_id, tool);
    body["project"] = project.into();
    let (status, answer) = server.post("/api/sessions/observations", &body);
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")), "{answer}");
    answer["messageId"].as_i64().unwrap()
}

fn summarize(server: &TestServer, session: &str) {
    let body = json!({"claudeSessionId": session, "last_user_message": "fix the ledger",
        "last_assistant_message": "Fixed the rounding in the ledger totals; next: add a regression test."});
    assert_eq!(server.post("/api/sessions/summarize", &body).1["status"], "queued");
}

/// alpha: 3 reads and a summary, completed; beta: 2 reads and a failed Poison; a third session whose
/// project name is markup (it must show as text). Waits until all of it is processed.
fn seed_three(server: &TestServer) {
    init(server, "alpha-1", "alpha", "fix the ledger rounding");
    for i in 0..3 {
        observe(server, "alpha-1", &format!("a{i}"), "Read", "alpha");
    }
    summarize(server, "alpha-1");
    init(server, "beta-1", "beta", "add the refunds report");
    init(server, "beta-1", "beta", "and test it");
    observe(server, "beta-1", "b0", "Read", "beta");
    observe(server, "beta-1", "b1", "Bash", "beta");
    observe(server, "beta-1", "b2", "Poison", "beta");
    init(server, "xss-1", XSS, "hello");
    observe(server, "xss-1", "x0", "Read", XSS);
    wait_for(UI, "the seeded work to settle", || {
        let (_, stats) = server.get("/api/stats");
        stats["queueDepth"] == 0 && stats["failed"] == 1
    });
    assert_eq!(server.post("/api/sessions/complete", &json!({"claudeSessionId": "alpha-1"})).1["status"], "completed");
}

const XSS: &str = "<img src=x onerror=\"window.__xss=1\">";

const FAILING: &[(&str, &str)] = &[("MEMTRAY_FAULT_FAIL_TOOLS", "Poison"), ("MEMTRAY_MAX_ATTEMPTS", "1")];

#[test]
fn the_sessions_list_shows_each_session_with_its_queue_counts_and_sorts_and_filters() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(FAILING);
    seed_three(&server);
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/sessions", "sessions");

    let mut rows = session_rows(&browser);
    rows.sort_by_key(|r| r["project"].as_str().unwrap().to_string());
    let summary: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (text("project"), text("status"), text("prompts"), text("queue"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            (XSS.into(), "active".into(), "1".into(), "1 processed".into()),
            ("alpha".into(), "completed".into(), "1".into(), "4 processed".into()),
            ("beta".into(), "active".into(), "2".into(), "1 failed 2 processed".into()),
        ]
    );
    assert_eq!(browser.eval("window.__xss === undefined && !document.querySelector('main img')"), true);

    // Sort by project: a click sorts ascending; Enter on the focused header flips it.
    browser.click(&browser.find("button.sort[data-sort=project]"));
    browser.wait_for(
        UI,
        "ascending project order",
        "document.querySelector('th[aria-sort=ascending] [data-sort=project]')",
    );
    let ascending = [XSS, "alpha", "beta"];
    browser.wait_for(
        UI,
        "rows in project order",
        &format!(
            "JSON.stringify([...document.querySelectorAll('table.sessions .project')].map(c => c.textContent)) === {}",
            js(&serde_json::to_string(&ascending).unwrap())
        ),
    );
    assert_eq!(browser.eval("document.activeElement.dataset.sort"), "project", "focus stays on the header");
    browser.press(key::ENTER);
    browser.wait_for(
        UI,
        "descending project order",
        "document.querySelector('th[aria-sort=descending] [data-sort=project]')",
    );
    browser.wait_for(
        UI,
        "rows in reverse project order",
        "document.querySelector('table.sessions .project').textContent === 'beta'",
    );
    assert_eq!(projects_in_order(&browser), ["beta", "alpha", XSS]);
    assert_eq!(browser.eval("document.querySelectorAll('th[aria-sort]').length"), 1);
    assert!(browser.eval("location.hash").as_str().unwrap().contains("sort=project&order=desc"));

    // Filters: by status, then by project from the list of known projects.
    browser.click(&browser.find("#filter-status option[value=completed]"));
    browser.wait_for(
        UI,
        "only completed sessions",
        "document.querySelectorAll('table.sessions tbody tr').length === 1",
    );
    assert_eq!(projects_in_order(&browser), ["alpha"]);
    browser.click(&browser.find("#filter-status option[value='']"));
    let options = browser.eval("[...document.querySelectorAll('#filter-project option')].map(o => o.textContent)");
    assert_eq!(options, json!(["All projects", format!("{XSS} (1)"), "alpha (1)", "beta (1)"]));
    browser.click(&browser.find("#filter-project option[value=beta]"));
    browser.wait_for(UI, "only beta", "document.querySelectorAll('table.sessions tbody tr').length === 1 && document.querySelector('table.sessions .project').textContent === 'beta'");
    screenshot(&browser, "sessions-filtered");

    // A session's link opens its detail.
    browser.click(&browser.find("table.sessions td.session a"));
    wait_ready(&browser, "session");
    assert!(main_text(&browser).contains("add the refunds report"));
}

#[test]
fn thousands_of_sessions_are_shown_fifty_per_page() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    for i in 0..120 {
        init(&server, &format!("s{i:03}"), &format!("p{:02}", i % 7), "go");
    }
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/sessions", "sessions");
    assert_eq!(session_rows(&browser).len(), 50);
    let range = || browser.eval("document.querySelector('.pager .range').textContent");
    assert_eq!(range(), "1–50 of 120 · page 1 of 3");
    assert_eq!(browser.eval("document.querySelector('[data-key=page-prev]').disabled"), true);
    // Most recently active first: the last session created is on top.
    assert_eq!(browser.eval("document.querySelector('table.sessions td.session a').title"), "s119");
    browser.click(&browser.find("[data-key=page-next]"));
    browser.wait_for(UI, "page 2", "document.querySelector('.pager .range').textContent.startsWith('51–100')");
    browser.click(&browser.find("[data-key=page-next]"));
    browser.wait_for(UI, "page 3", "document.querySelectorAll('table.sessions tbody tr').length === 20");
    assert_eq!(range(), "101–120 of 120 · page 3 of 3");
    assert_eq!(browser.eval("document.querySelector('[data-key=page-next]').disabled"), true);
    assert_eq!(browser.eval("document.querySelector('table.sessions td.session a').title"), "s019");
    // The page is in the URL: a reload comes back to it.
    browser.goto(&server.url("/#/sessions?page=3"));
    wait_ready(&browser, "sessions");
    assert_eq!(range(), "101–120 of 120 · page 3 of 3");
}

/// The queue row of a message as (status, attempts), or None when it is not listed.
fn queue_row(browser: &Browser, message_id: i64) -> Option<(String, String)> {
    let row = browser.eval(&format!(
        "(tr => tr && [tr.dataset.status, tr.children[4].textContent])(document.querySelector('table.queue tr[data-message-id=\"{message_id}\"]'))"
    ));
    row.as_array().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
}

fn announced(browser: &Browser) -> String {
    browser.eval("document.getElementById('status').textContent").as_str().unwrap().to_string()
}

#[test]
fn the_queue_view_retries_a_stuck_message_and_aborts_a_failed_one_after_confirmation() {
    let _one = one_browser_at_a_time();
    // Every provider call takes 5 s and a claim turns stuck after 1 s: the message is stuck from 1 s to 5 s.
    let server = TestServer::start(&[
        ("MEMTRAY_FAULT_PROVIDER_DELAY_MS", "5000"),
        ("MEMTRAY_STUCK_AFTER_SECS", "1"),
        ("MEMTRAY_FAULT_FAIL_TOOLS", "Poison"),
        ("MEMTRAY_MAX_ATTEMPTS", "1"),
    ]);
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/queue", "queue");
    init(&server, "slow-1", "ledger", "read the ledger");
    let slow = observe(&server, "slow-1", "r1", "Read", "ledger");
    init(&server, "poison-1", "atlas", "poison it");
    let poison = observe(&server, "poison-1", "p1", "Poison", "atlas");

    // Stuck: shown as such (live, no reload), first in the list; Retry sends it back and it ends processed.
    browser.wait_for(
        UI,
        "the stuck message",
        &format!("document.querySelector('tr[data-message-id=\"{slow}\"][data-status=stuck]')"),
    );
    // The poison message is in its 5 s provider call too: both are stuck now.
    browser.wait_for(
        UI,
        "two stuck",
        "document.querySelector('.cards [data-metric=stuck].alarm dd').textContent === '2'",
    );
    browser.click(&browser.find(&format!("tr[data-message-id=\"{slow}\"] button[data-action=retry]")));
    browser.wait_for(
        UI,
        "the retry to be announced",
        &format!(
            "document.getElementById('status').textContent === {}",
            js(&format!("Message #{slow} was sent back to the queue."))
        ),
    );
    let (status, attempts) = queue_row(&browser, slow).expect("the retried message is still queued");
    assert!(status == "pending" || status == "processing", "retried message shows {status}");
    assert!(attempts == "0" || attempts == "1", "fresh attempts, got {attempts}");
    browser.wait_for(
        Duration::from_secs(30),
        "the retried message to leave the queue",
        &format!("document.body.dataset.renders && !document.querySelector('tr[data-message-id=\"{slow}\"]')"),
    );
    assert_eq!(server.count(&format!("SELECT count(*) FROM messages WHERE id = {slow} AND status = 'processed'")), 1);

    // Failed: listed first; "Retry all" sends it back; Abort asks first, Cancel keeps it, confirming deletes it.
    browser.wait_for(UI, "the failed message", &format!("document.querySelector('table.queue tbody tr:first-child[data-message-id=\"{poison}\"][data-status=failed]')"));
    assert!(main_text(&browser).contains("injected fault"), "the last error is shown");
    browser.click(&browser.find("[data-key=retry-all]"));
    browser.wait_for(
        UI,
        "retry all to be announced",
        "document.getElementById('status').textContent.includes('were sent back to the queue')",
    );
    browser.wait_for(
        UI,
        "the failed message to be pending again",
        &format!("document.querySelector('tr[data-message-id=\"{poison}\"]:not([data-status=failed])')"),
    );

    browser.click(&browser.find(&format!("tr[data-message-id=\"{poison}\"] button[data-action=abort]")));
    browser.wait_for(UI, "the confirmation", "document.getElementById('confirm').open");
    assert!(browser.eval("document.getElementById('confirm-text').textContent").as_str().unwrap().contains("atlas"));
    assert_eq!(browser.eval("document.activeElement.id"), "confirm-cancel", "focus starts on the safe choice");
    browser.click(&browser.find("#confirm-cancel"));
    browser.wait_for(UI, "the dialog to close", "!document.getElementById('confirm').open");
    assert_eq!(announced(&browser), format!("Message #{poison} was kept."));
    assert!(queue_row(&browser, poison).is_some());
    assert_eq!(server.count(&format!("SELECT count(*) FROM messages WHERE id = {poison}")), 1);

    browser.click(&browser.find(&format!("tr[data-message-id=\"{poison}\"] button[data-action=abort]")));
    browser.wait_for(UI, "the confirmation", "document.getElementById('confirm').open");
    screenshot(&browser, "queue-confirm-abort");
    browser.click(&browser.find("#confirm-ok"));
    browser.wait_for(
        UI,
        "the abort to be announced",
        &format!(
            "document.getElementById('status').textContent === {}",
            js(&format!("Message #{poison} was aborted."))
        ),
    );
    browser.wait_for(
        UI,
        "the aborted message to leave the list",
        &format!("!document.querySelector('tr[data-message-id=\"{poison}\"]')"),
    );
    assert_eq!(server.count(&format!("SELECT count(*) FROM messages WHERE id = {poison}")), 0);
    browser.wait_for(UI, "the empty queue", "document.getElementById('main').innerText.includes('Nothing waiting')");
}

#[test]
fn a_new_observation_appears_in_the_open_session_within_a_second_without_a_reload() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    init(&server, "live-1", "ledger", "watch this");
    observe(&server, "live-1", "l0", "Read", "ledger");
    server.wait_idle(UI);
    let id = session_id(&server, "live-1");
    let browser = Browser::start(&[]);
    open(&browser, &server, &format!("#/sessions/{id}"), "session");
    assert_eq!(browser.eval("document.querySelectorAll('.observation').length"), 1);
    browser.execute("window.__marker = 42;", &[]);

    // Tool output is untrusted: the markup in this command must arrive as text.
    let command = format!("echo {XSS} live-token-7");
    let mut body = observation("live-1", "l1", "Bash");
    body["tool_input"] = json!({ "command": command });
    body["project"] = "ledger".into();
    let posted = Instant::now();
    assert_eq!(server.post("/api/sessions/observations", &body).1["status"], "queued");
    browser.wait_for(
        Duration::from_secs(1),
        "the new observation in the open session view",
        &format!("[...document.querySelectorAll('.observation-title')].some(t => t.textContent === {})", js(&command)),
    );
    let took = posted.elapsed();
    assert_eq!(browser.eval("window.__marker"), 42, "the page was not reloaded");
    assert_eq!(browser.eval("performance.getEntriesByType('navigation').length"), 1);
    assert_eq!(browser.eval("document.querySelectorAll('.observation').length"), 2);
    assert_eq!(browser.eval("window.__xss === undefined && !document.querySelector('main img')"), true);
    eprintln!("new observation shown {took:?} after it was posted");
}

#[test]
fn the_banner_shows_while_the_server_is_down_and_fresh_data_follows_the_reconnect() {
    let _one = one_browser_at_a_time();
    let mut server = TestServer::start(&[]);
    init(&server, "before-1", "before", "hello");
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/sessions", "sessions");
    browser.execute("window.__marker = 'still here';", &[]);
    assert_eq!(browser.eval("document.getElementById('banner').hidden"), true);

    assert!(server.stop().success());
    browser.wait_for(UI, "the lost-connection banner", "!document.getElementById('banner').hidden");
    let banner = browser.eval("(b => [b.getAttribute('role'), b.textContent])(document.getElementById('banner'))");
    assert_eq!(banner, json!(["alert", "Lost connection to memtray — reconnecting…"]));
    screenshot(&browser, "sessions-offline");

    // Written while no server runs, so no event announces it: only a refetch after reconnecting can show it.
    let conn = rusqlite::Connection::open(server.database()).unwrap();
    conn.execute(
        "INSERT INTO sessions (agent_session_id, project, started_at, last_activity_at)
         VALUES ('after-1', 'fresh-after-restart', 1, strftime('%s', 'now') * 1000)",
        [],
    )
    .unwrap();
    drop(conn);

    server.spawn();
    browser.wait_for(UI, "the banner to go", "document.getElementById('banner').hidden");
    browser.wait_for(
        UI,
        "fresh data",
        "document.querySelector('table.sessions .project').textContent === 'fresh-after-restart'",
    );
    assert_eq!(browser.eval("window.__marker"), "still here", "reconnecting did not reload the page");
    assert_eq!(projects_in_order(&browser), ["fresh-after-restart", "before"]);
}

#[test]
fn empty_states_say_what_to_do_next() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/", "overview");
    assert!(main_text(&browser).contains("memtray install-hooks"), "{}", main_text(&browser));
    screenshot(&browser, "overview-empty");
    open(&browser, &server, "#/sessions", "sessions");
    let text = main_text(&browser);
    assert!(text.contains("No sessions yet") && text.contains("memtray install-hooks"), "{text}");
    open(&browser, &server, "#/queue", "queue");
    assert!(main_text(&browser).contains("Nothing waiting"));
    assert_eq!(browser.eval("document.querySelector('[data-key=retry-all]').disabled"), true);
    open(&browser, &server, "#/sessions/424242", "session");
    assert!(main_text(&browser).contains("Session not found"));
    open(&browser, &server, "#/no/such/view", "missing");
    assert!(main_text(&browser).contains("Nothing here"));
    // A filter that matches nothing says so and offers to clear it.
    init(&server, "one", "ledger", "go");
    open(&browser, &server, "#/sessions?status=completed", "sessions");
    assert!(main_text(&browser).contains("No sessions match these filters"));
}

#[test]
fn every_view_has_a_screenshot_in_light_and_dark() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(FAILING);
    seed_three(&server);
    for i in 0..8 {
        init(&server, &format!("more-{i}"), ["ledger", "atlas", "refunds"][i % 3], "keep going");
        observe(&server, &format!("more-{i}"), &format!("m{i}"), "Bash", "x");
    }
    server.wait_idle(UI);
    let beta = session_id(&server, "beta-1");
    let alpha = session_id(&server, "alpha-1");
    let browser = Browser::start(&[]);
    for scheme in ["light", "dark"] {
        browser.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
        let views = [
            ("overview", "#/".to_string(), "overview"),
            ("sessions", "#/sessions".to_string(), "sessions"),
            ("session", format!("#/sessions/{alpha}"), "session"),
            ("session-failed", format!("#/sessions/{beta}"), "session"),
            ("queue", "#/queue".to_string(), "queue"),
        ];
        for (name, hash, view) in views {
            open(&browser, &server, &hash, view);
            let dark = browser.eval("matchMedia('(prefers-color-scheme: dark)').matches");
            assert_eq!(dark, scheme == "dark");
            screenshot(&browser, &format!("{name}-{scheme}"));
        }
    }
    // The detail view shows the session's parts: prompt, observations with facts, summary, queue messages.
    open(&browser, &server, &format!("#/sessions/{beta}"), "session");
    let text = main_text(&browser);
    for part in ["add the refunds report", "and test it", "Observations", "Queue messages", "injected fault"] {
        assert!(text.contains(part), "{part} missing from:\n{text}");
    }
    open(&browser, &server, &format!("#/sessions/{alpha}"), "session");
    assert!(main_text(&browser).contains("Fixed the rounding"), "the summary is shown");
}

#[test]
fn a_burst_of_events_is_coalesced_into_a_few_redraws() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    init(&server, "burst-1", "ledger", "go");
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/sessions", "sessions");
    let renders = || browser.eval("Number(document.body.dataset.renders)").as_u64().unwrap();
    let before = renders();
    let started = Instant::now();
    for i in 0..150 {
        observe(&server, &format!("burst-{}", i % 5), &format!("t{i}"), "Read", "ledger");
    }
    server.wait_idle(UI);
    browser.wait_for(UI, "the final counts", "[...document.querySelectorAll('table.sessions .queue')].map(c => parseInt(c.textContent)).reduce((a, b) => a + b, 0) === 150");
    let elapsed = started.elapsed();
    let redraws = renders() - before;
    // At most one refetch per 400 ms (plus the one a burst's first event starts at once, and the last).
    let bound = elapsed.as_millis() as u64 / 400 + 3;
    eprintln!("{redraws} redraws for ~450 events in {elapsed:?}");
    assert!(redraws <= bound, "{redraws} redraws in {elapsed:?}: events are not coalesced (bound {bound})");
}

/// Tool output with markup and an ampersand: it must reach the page as text, in the title and the snippet.
const SCRIPT_COMMAND: &str = "echo '<script>window.__xss=2</script> zephyr & friends'";

fn bash(server: &TestServer, session: &str, tool_use_id: &str, project: &str, command: &str) {
    let mut body = observation(session, tool_use_id, "Bash");
    body["tool_input"] = json!({ "command": command });
    body["project"] = project.into();
    assert_eq!(server.post("/api/sessions/observations", &body).1["status"], "queued");
}

fn read_file(server: &TestServer, session: &str, tool_use_id: &str, project: &str, path: &str) {
    let mut body = observation(session, tool_use_id, "Read");
    body["tool_input"] = json!({ "file_path": path });
    body["tool_response"] = json!({ "file": { "filePath": path, "numLines": 12, "startLine": 1, "totalLines": 12 } });
    body["project"] = project.into();
    assert_eq!(server.post("/api/sessions/observations", &body).1["status"], "queued");
}

fn stop(server: &TestServer, session: &str) {
    let body = json!({"claudeSessionId": session, "last_user_message": "", "last_assistant_message": "Done."});
    assert_eq!(server.post("/api/sessions/summarize", &body).1["status"], "queued");
}

/// orchard-1: "zephyr" in a command, in a command full of markup, and in a file name it read, then thirty
/// other commands (so its first observation is far down its page) and a summary; orchard-2, later: another
/// summary; harbor-1, another project: "zephyr" in a command, and a summary. Waits until it is all memory.
fn seed_memory(server: &TestServer) {
    init(server, "orchard-1", "orchard", "plant the quince trees");
    bash(server, "orchard-1", "o0", "orchard", "echo zephyr planting");
    bash(server, "orchard-1", "o1", "orchard", SCRIPT_COMMAND);
    read_file(server, "orchard-1", "o2", "orchard", "/home/dev/projects/ledger/zephyr_notes.md");
    for i in 0..30 {
        bash(server, "orchard-1", &format!("f{i}"), "orchard", &format!("echo filler {i}"));
    }
    stop(server, "orchard-1");
    server.wait_idle(UI);
    init(server, "orchard-2", "orchard", "prune the quince hedge");
    bash(server, "orchard-2", "p0", "orchard", "echo marigold");
    stop(server, "orchard-2");
    init(server, "harbor-1", "harbor", "moor the boats");
    bash(server, "harbor-1", "h0", "harbor", "echo zephyr anchor");
    stop(server, "harbor-1");
    server.wait_idle(UI);
}

/// The hits the Memory view shows, as `kind-id`, in order.
fn shown_hits(browser: &Browser) -> Vec<String> {
    let keys =
        browser.eval("[...document.querySelectorAll('.hits .hit')].map(h => `${h.dataset.kind}-${h.dataset.hitId}`)");
    keys.as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect()
}

/// The hits the API gives for `query`, as `kind-id`, in order.
fn api_hits(server: &TestServer, query: &str) -> Vec<String> {
    let (status, answer) = server.get(&format!("/api/search?{query}"));
    assert_eq!(status, 200, "{answer}");
    answer["hits"].as_array().unwrap().iter().map(|h| format!("{}-{}", h["kind"].as_str().unwrap(), h["id"])).collect()
}

/// Waits until the Memory view has drawn the address `hash` (its own canonical form of the search).
fn wait_rendered(browser: &Browser, hash: &str) {
    browser.wait_for(
        UI,
        &format!("the memory view to draw {hash}"),
        &format!("document.querySelector('.memory')?.dataset.rendered === {}", js(hash)),
    );
}

fn search_box_types(browser: &Browser, text: &str) {
    let input = browser.find("#memory-q");
    browser.execute("arguments[0].value = '';", &[input.arg()]);
    browser.send_keys(&input, text);
}

#[test]
fn the_memory_view_searches_as_you_type_filters_and_opens_a_hit_at_its_observation() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    seed_memory(&server);
    let planting = server.count("SELECT id FROM observations WHERE title = 'echo zephyr planting'");
    let harbor = server.count("SELECT id FROM observations WHERE title = 'echo zephyr anchor'");
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/memory", "memory");
    assert_eq!(browser.eval("document.querySelector('nav a[aria-current=page]').dataset.view"), "memory");
    assert!(main_text(&browser).contains("Type to search your memory"), "{}", main_text(&browser));
    assert_eq!(browser.eval("document.activeElement.id"), "memory-q", "an empty search page starts in its box");

    // Typing: one debounced search, not one per letter; the query goes into the address without a history
    // entry per letter.
    let history = browser.eval("history.length");
    browser.execute(
        "window.__searches = [];
         const fetch = window.fetch;
         window.fetch = (url, init) => { if (String(url).startsWith('/api/search')) window.__searches.push(String(url)); return fetch(url, init); };",
        &[],
    );
    // Three bursts of typing, each within the debounce of the last.
    let input = browser.find("#memory-q");
    for part in ["zep", "h", "yr"] {
        browser.send_keys(&input, part);
        std::thread::sleep(Duration::from_millis(40));
    }
    wait_rendered(&browser, "#/memory?q=zephyr");
    assert_eq!(browser.eval("location.hash"), "#/memory?q=zephyr");
    assert_eq!(browser.eval("history.length"), history);
    let searches = browser.eval("window.__searches");
    let searches = searches.as_array().unwrap();
    // One search when nothing stalls; never one per burst.
    assert!(searches.len() < 3, "{searches:?}");
    assert_eq!(searches.last().unwrap(), "/api/search?q=zephyr&limit=20");
    let all = api_hits(&server, "q=zephyr");
    assert_eq!(shown_hits(&browser), all);
    assert!(
        all.contains(&format!("observation-{planting}")) && all.contains(&format!("observation-{harbor}")),
        "{all:?}"
    );
    assert!(browser.eval("document.querySelector('.results-count').textContent").as_str().unwrap().contains("match"));

    // Every match is marked, and only matches are.
    let marks =
        browser.eval("[...document.querySelectorAll('.hits .hit-snippet mark')].map(m => m.textContent.toLowerCase())");
    let marks = marks.as_array().unwrap();
    assert!(marks.len() >= all.len(), "{marks:?}");
    assert!(marks.iter().all(|m| m == "zephyr"), "{marks:?}");

    // Markup in tool output is text: in the title and in the snippet, with its ampersand.
    let hit = browser.eval(&format!(
        "(h => h && [h.querySelector('.hit-title').textContent, h.querySelector('.hit-snippet').textContent])([...document.querySelectorAll('.hit')].find(h => h.querySelector('.hit-title').textContent === {}))",
        js(SCRIPT_COMMAND)
    ));
    assert_eq!(hit[0], SCRIPT_COMMAND, "{hit}");
    let snippet = hit[1].as_str().unwrap();
    assert!(snippet.contains("<script>window.__xss=2</script> zephyr & friends"), "{snippet}");
    assert_eq!(browser.eval("window.__xss === undefined && !document.querySelector('main script')"), true);
    screenshot(&browser, "memory-results");

    // Filters: a project, then an observation type; each is a history entry and changes the hits as the API does.
    browser.click(&browser.find("#memory-project option[value=orchard]"));
    wait_rendered(&browser, "#/memory?q=zephyr&project=orchard");
    let orchard = api_hits(&server, "q=zephyr&project=orchard");
    assert_eq!(shown_hits(&browser), orchard);
    assert!(
        !orchard.contains(&format!("observation-{harbor}")) && orchard.contains(&format!("observation-{planting}"))
    );
    let projects = browser.eval("[...document.querySelectorAll('.hit .hit-meta a')].map(a => a.textContent)");
    assert!(projects.as_array().unwrap().iter().all(|p| p == "orchard"), "{projects}");
    browser.click(&browser.find("#memory-type option[value=discovery]"));
    wait_rendered(&browser, "#/memory?q=zephyr&project=orchard&type=discovery");
    let discovery = api_hits(&server, "q=zephyr&project=orchard&type=discovery");
    assert_eq!(shown_hits(&browser), discovery);
    assert_eq!(discovery.len(), 1, "only the file it read: {discovery:?}");
    assert_eq!(browser.eval("document.querySelector('.hit .badge-type-discovery').textContent"), "discovery");
    assert!(
        browser
            .eval("document.querySelector('.hit .hit-title').textContent")
            .as_str()
            .unwrap()
            .contains("zephyr_notes.md")
    );
    browser.back();
    wait_rendered(&browser, "#/memory?q=zephyr&project=orchard");
    assert_eq!(browser.eval("document.getElementById('memory-type').value"), "");
    browser.click(&browser.find("#memory-project option[value='']"));
    wait_rendered(&browser, "#/memory?q=zephyr");
    browser.click(&browser.find("#memory-kind option[value=summary]"));
    wait_rendered(&browser, "#/memory?q=zephyr&kind=summary");
    let summaries = api_hits(&server, "q=zephyr&kind=summary");
    assert_eq!(shown_hits(&browser), summaries);
    assert!(!summaries.is_empty() && summaries.iter().all(|h| h.starts_with("summary-")), "{summaries:?}");
    // Nothing is newer than tomorrow: no matches, with a button that clears the filters.
    browser.execute(
        "const d = new Date(Date.now() + 86400000), since = document.getElementById('memory-since');
         since.value = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
         since.dispatchEvent(new Event('change'));",
        &[],
    );
    browser.wait_for(UI, "no matches since tomorrow", "document.querySelector('.memory').dataset.state === 'empty'");
    assert!(browser.eval("location.hash").as_str().unwrap().contains("&since="));
    assert!(main_text(&browser).contains("No matches"), "{}", main_text(&browser));
    browser.click(&browser.find(".memory .empty button"));
    wait_rendered(&browser, "#/memory?q=zephyr");
    assert_eq!(shown_hits(&browser), all);

    // No match, punctuation only, and malformed FTS5 syntax (refused by the server, said inline).
    search_box_types(&browser, "zephyr qwertyuiop");
    wait_rendered(&browser, "#/memory?q=zephyr+qwertyuiop");
    assert_eq!(browser.eval("document.querySelector('.memory').dataset.state"), "empty");
    assert!(main_text(&browser).contains("No matches"), "{}", main_text(&browser));
    search_box_types(&browser, "&& --");
    wait_rendered(&browser, "#/memory?q=%26%26+--");
    assert!(main_text(&browser).contains("Nothing to search for"), "{}", main_text(&browser));
    assert_eq!(browser.eval("document.querySelectorAll('.hits .hit').length"), 0);
    browser.click(&browser.find("#memory-fts5"));
    search_box_types(&browser, "zephyr AND");
    browser.press(key::ENTER);
    wait_rendered(&browser, "#/memory?q=zephyr+AND&syntax=fts5");
    let error = browser.eval("(e => !e.hidden && e.getAttribute('role') === 'alert' && e.textContent)(document.querySelector('.memory .notice.error'))");
    assert!(error.as_str().is_some_and(|e| e.contains("not valid FTS5 syntax")), "{error}");
    screenshot(&browser, "memory-error");
    search_box_types(&browser, "zephyr OR marigold");
    wait_rendered(&browser, "#/memory?q=zephyr+OR+marigold&syntax=fts5");
    assert_eq!(browser.eval("document.querySelector('.memory .notice.error').hidden"), true);
    assert_eq!(shown_hits(&browser), api_hits(&server, "q=zephyr+OR+marigold&syntax=fts5"));
    browser.click(&browser.find("#memory-fts5"));
    search_box_types(&browser, "zephyr");
    wait_rendered(&browser, "#/memory?q=zephyr");

    // The keyboard: `/` comes back to the box from anywhere, Down walks the hits, Enter opens one.
    browser.execute("document.activeElement.blur();", &[]);
    browser.press("/");
    assert_eq!(browser.eval("document.activeElement.id"), "memory-q");
    assert_eq!(browser.eval("document.getElementById('memory-q').value"), "zephyr", "`/` is not typed");
    browser.press(key::ARROW_DOWN);
    assert_eq!(browser.eval("document.activeElement.closest('.hit') === document.querySelector('.hit')"), true);
    browser.press(key::ARROW_DOWN);
    assert_eq!(browser.eval("document.activeElement.closest('.hit') === document.querySelectorAll('.hit')[1]"), true);
    browser.press(key::ARROW_UP);
    browser.press(key::ARROW_UP);
    assert_eq!(browser.eval("document.activeElement.id"), "memory-q");

    // Opening a hit lands on its session with that observation highlighted, scrolled to and focused.
    let planting_hit = format!(".hit[data-kind=observation][data-hit-id=\"{planting}\"] .hit-title");
    browser.execute("arguments[0].focus();", &[browser.find(&planting_hit).arg()]);
    browser.press(key::ENTER);
    wait_ready(&browser, "session");
    let orchard_1 = session_id(&server, "orchard-1");
    assert_eq!(browser.eval("location.hash"), format!("#/sessions/{orchard_1}?observation={planting}"));
    browser.wait_for(
        UI,
        "the observation to be highlighted",
        &format!("document.querySelector('.observation.target')?.dataset.observationId === '{planting}'"),
    );
    assert_eq!(browser.eval("document.querySelectorAll('.observation.target').length"), 1);
    assert_eq!(browser.eval("document.activeElement === document.querySelector('.observation.target')"), true);
    assert_eq!(
        browser.eval(
            "(r => r.top >= 0 && r.bottom <= innerHeight)(document.querySelector('.observation.target').getBoundingClientRect())"
        ),
        true,
        "the observation is in view"
    );
    assert!(browser.eval("scrollY").as_f64().unwrap() > 200.0, "it was far down the page: the view scrolled to it");
    screenshot(&browser, "session-search-hit");

    // Back: the search as it was, query in the box.
    browser.back();
    wait_ready(&browser, "memory");
    wait_rendered(&browser, "#/memory?q=zephyr");
    assert_eq!(browser.eval("document.getElementById('memory-q').value"), "zephyr");
    assert_eq!(shown_hits(&browser), all);

    // A summary hit opens its session at the summary.
    search_box_types(&browser, "quince hedge");
    wait_rendered(&browser, "#/memory?q=quince+hedge");
    browser.click(&browser.find(".hit[data-kind=summary] .hit-title"));
    wait_ready(&browser, "session");
    assert_eq!(browser.eval("document.activeElement.matches('.summary.target')"), true);
    assert!(main_text(&browser).contains("prune the quince hedge"));
}

#[test]
fn a_project_page_lists_its_summaries_newest_first_in_light_and_dark() {
    let _one = one_browser_at_a_time();
    let server = TestServer::start(&[]);
    seed_memory(&server);
    let browser = Browser::start(&[]);
    open(&browser, &server, "#/memory", "memory");
    // The empty search page offers every project's page; a hit's project links to it too.
    let links = browser.eval("[...document.querySelectorAll('.project-links a')].map(a => a.textContent)");
    assert_eq!(links, json!(["harbor", "orchard"]));
    browser.send_keys(&browser.find("#memory-q"), "marigold");
    wait_rendered(&browser, "#/memory?q=marigold");
    browser.click(&browser.find(".hit .hit-meta a"));
    wait_ready(&browser, "project");
    assert_eq!(browser.eval("location.hash"), "#/projects/orchard");
    assert_eq!(browser.eval("document.querySelector('nav a[aria-current=page]').dataset.view"), "memory");

    let newest_first: Vec<i64> = {
        let (_, page) = server.get("/api/summaries?project=orchard");
        page["items"].as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(newest_first.len(), 2);
    assert!(newest_first[0] > newest_first[1]);
    let shown =
        browser.eval("[...document.querySelectorAll('.timeline > li')].map(li => Number(li.dataset.summaryId))");
    assert_eq!(shown, json!(newest_first));
    let text = main_text(&browser);
    let (later, earlier) = (text.find("prune the quince hedge"), text.find("plant the quince trees"));
    assert!(later.is_some() && earlier.is_some() && later < earlier, "newest first:\n{text}");
    assert!(!text.contains("moor the boats"), "another project's summary:\n{text}");

    // Each summary links to its session at that summary.
    let orchard_2 = session_id(&server, "orchard-2");
    browser.click(&browser.find(".timeline > li:first-child a"));
    wait_ready(&browser, "session");
    assert_eq!(browser.eval("location.hash"), format!("#/sessions/{orchard_2}?summary={}", newest_first[0]));
    browser.wait_for(UI, "the summary to be highlighted", "document.querySelector('.summary.target')");
    browser.back();
    wait_ready(&browser, "project");

    for scheme in ["light", "dark"] {
        browser.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
        open(&browser, &server, "#/memory", "memory");
        screenshot(&browser, &format!("memory-empty-{scheme}"));
        open(&browser, &server, "#/memory?q=zephyr", "memory");
        wait_rendered(&browser, "#/memory?q=zephyr");
        screenshot(&browser, &format!("memory-{scheme}"));
        open(&browser, &server, "#/projects/orchard", "project");
        screenshot(&browser, &format!("project-{scheme}"));
    }
    // A project nobody knows is an empty timeline, not an error.
    open(&browser, &server, "#/projects/nowhere", "project");
    assert!(main_text(&browser).contains("No summaries yet"), "{}", main_text(&browser));
}

/// Memory made by a model shows its narrative, concepts and maker; memory `local` made past the daily token
/// ceiling says it is a fallback and why; the overview shows the provider's state and the tokens it spent.
#[test]
fn provider_memory_shows_who_made_it_and_the_overview_shows_the_provider_and_its_tokens() {
    let _one = one_browser_at_a_time();
    let fake = fake_llm::FakeLlm::start(Some("sk-ui"));
    let base = fake.anthropic_url();
    let server = TestServer::start(&[
        ("MEMTRAY_PROVIDER", "anthropic"),
        ("MEMTRAY_ANTHROPIC_BASE_URL", &base),
        ("MEMTRAY_ANTHROPIC_API_KEY", "sk-ui"),
        ("MEMTRAY_MAX_TOKENS_PER_DAY", "50"),
    ]);
    init(&server, "m-1", "ledger", "why do totals drift");
    observe(&server, "m-1", "m1", "Read", "ledger");
    server.wait_idle(UI);
    init(&server, "m-2", "ledger", "and now");
    observe(&server, "m-2", "m2", "Bash", "ledger");
    server.wait_idle(UI);
    assert_eq!(fake.count(), 1, "the second tool use came after the ceiling");

    let browser = Browser::start(&[]);
    open(&browser, &server, &format!("#/sessions/{}", session_id(&server, "m-1")), "session");
    let text = main_text(&browser);
    assert!(text.contains("Model saw Read #1"), "{text}");
    assert!(text.contains("The agent used Read; this is why it matters."), "the narrative: {text}");
    assert!(text.contains("how-it-works"), "the concepts: {text}");
    assert!(text.contains("Made by anthropic · claude-haiku-4-5"), "{text}");
    assert!(!text.contains("Fallback memory"), "{text}");

    open(&browser, &server, &format!("#/sessions/{}", session_id(&server, "m-2")), "session");
    let note = browser.eval("document.querySelector('.made-by.fallback')?.textContent ?? ''");
    let note = note.as_str().unwrap();
    assert!(note.starts_with("Fallback memory (local): "), "{note}");
    assert!(note.contains("the daily token ceiling (50) is reached"), "{note}");

    open(&browser, &server, "#/", "overview");
    browser.wait_for(
        UI,
        "the provider card",
        "document.querySelector('[data-metric=provider] dd').textContent.includes('anthropic')",
    );
    let card = browser.eval("document.querySelector('[data-metric=provider] dd').textContent");
    assert_eq!(card, "anthropic · Token ceiling reached");
    let note = browser.eval("document.querySelector('.provider-health').hidden ? '' : document.querySelector('.provider-health').textContent");
    assert!(note.as_str().unwrap().contains("daily token ceiling (50)"), "{note}");
    let spent = server.count("SELECT sum(input_tokens + output_tokens) FROM provider_calls");
    let rows = browser.eval(
        "[...document.querySelectorAll('.tokens-table')].map(t => [t.dataset.group, [...t.querySelectorAll('tbody tr')].map(r => r.innerText.split('\\t').join(' '))])",
    );
    let rows = rows.to_string();
    assert!(rows.contains("Per provider") && rows.contains("anthropic 1 1"), "{rows}");
    assert!(rows.contains("Per project") && rows.contains("ledger 1 1"), "{rows}");
    let today = browser.eval("document.querySelector('[data-metric=tokensToday] dd').textContent");
    assert!(today.as_str().unwrap().ends_with(" of 50"), "{today}");
    assert!(spent > 50, "{spent}");
    screenshot(&browser, "overview-provider");
}
