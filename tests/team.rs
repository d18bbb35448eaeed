//! Team memory against a real PostgreSQL (a throwaway cluster), real team-server processes and two or
//! three real local memtrays with their own homes: shared memory reaches teammates labelled with its
//! author and unshared memory never leaves; a team server SIGKILLed mid-push and PostgreSQL restarted lose
//! and duplicate nothing; two team servers on one database interleave without loss; keys and projects are
//! enforced on every request.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::postgres::{self, Machine, Postgres, TeamServer};
use support::{TestServer, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

/// A local memtray linked to `team` with `key`, sharing `share`.
fn machine(team: &TeamServer, key: &str, share: &str) -> Machine {
    postgres::machine(team, key, share, "50", &[("MEMTRAY_LINGER_MS", "200")])
}

/// A session in `project` with `tools` Bash tool uses mentioning `word`, then its summary.
fn work(server: &TestServer, session: &str, project: &str, word: &str, tools: usize) {
    let init = json!({"claudeSessionId": session, "project": project, "prompt": format!("look into the {word}")});
    assert_eq!(server.post("/api/sessions/init", &init).0, 200);
    for i in 0..tools {
        let mut body = support::observation(session, &format!("{session}-{i}"), "Bash");
        body["cwd"] = json!(format!("/home/dev/projects/{project}"));
        body["tool_input"] = json!({"command": format!("cargo test {word}_{i} <private>sekrit-{word}</private>")});
        let (status, answer) = server.post("/api/sessions/observations", &body);
        assert_eq!(status, 200, "{answer}");
    }
    let end = json!({"claudeSessionId": session, "last_assistant_message": format!("fixed the {word}")});
    assert_eq!(server.post("/api/sessions/summarize", &end).0, 200);
}

/// This machine's own memory of `project` (what it should have pushed).
fn own_memory(server: &TestServer, project: &str) -> i64 {
    let of = |table: &str| {
        server.count(&format!(
            "SELECT count(*) FROM {table} t JOIN sessions s ON s.id = t.session_id
             WHERE s.project = '{project}' AND s.author IS NULL"
        ))
    };
    of("observations") + of("summaries")
}

/// Memory this machine pulled from `author`.
fn pulled_from(server: &TestServer, author: &str) -> i64 {
    let of = |table: &str| {
        server.count(&format!(
            "SELECT count(*) FROM {table} t JOIN sessions s ON s.id = t.session_id WHERE s.author = '{author}'"
        ))
    };
    of("observations") + of("summaries")
}

fn outbox(server: &TestServer) -> i64 {
    server.count("SELECT count(*) FROM team_outbox")
}

fn on_server(pg: &Postgres, filter: &str) -> i64 {
    pg.count(&format!("SELECT count(*) FROM memories WHERE {filter}"))
}

fn search(server: &TestServer, q: &str, extra: &str) -> Vec<Value> {
    let (status, answer) = server.get(&format!("/api/search?q={q}{extra}"));
    assert_eq!(status, 200, "{answer}");
    answer["hits"].as_array().cloned().unwrap()
}

#[test]
fn shared_memory_reaches_a_teammate_labelled_and_unshared_memory_never_leaves() {
    let pg = Postgres::start();
    let team = TeamServer::start(&pg);
    let alice_key = team.add_member("alice", &["ledger", "atlas"], &[]);
    let bob_key = team.add_member("bob", &["ledger", "atlas"], &[]);
    let a = machine(&team, &alice_key, "ledger");
    let b = machine(&team, &bob_key, "ledger,atlas");

    work(&a, "a-ledger", "ledger", "walrus", 3);
    work(&a, "a-atlas", "atlas", "narwhal", 2);
    a.wait_idle(LIMIT);
    let shared = own_memory(&a, "ledger");
    assert!(shared >= 4, "three observations and a summary at least, got {shared}");
    assert!(own_memory(&a, "atlas") >= 3);

    wait_for(LIMIT, "A's shared memory on the team server", || outbox(&a) == 0 && on_server(&pg, "true") == shared);
    assert_eq!(on_server(&pg, "project = 'ledger' AND author = 'alice'"), shared);
    assert_eq!(on_server(&pg, "project = 'atlas'"), 0, "atlas is not shared by A");
    assert_eq!(on_server(&pg, "body::text LIKE '%sekrit%'"), 0, "private text never leaves");
    assert_eq!(on_server(&pg, "body ? 'tool_input' OR body ? 'tool_response'"), 0, "memory, never raw events");

    wait_for(LIMIT, "B to pull A's memory", || pulled_from(&b, "alice") == shared);
    let hits = search(&b, "walrus", "");
    assert!(!hits.is_empty(), "B finds A's memory");
    assert!(hits.iter().all(|h| h["author"] == "alice"), "{hits:#?}");
    assert_eq!(search(&b, "walrus", "&author=alice").len(), hits.len());
    assert!(search(&b, "walrus", "&author=me").is_empty(), "none of it is B's own");
    assert!(search(&b, "narwhal", "").is_empty(), "an unshared project's memory never reaches B");
    let (status, context) = b.get("/api/context?project=ledger");
    assert_eq!(status, 200);
    let text = context["context"].as_str().unwrap();
    assert!(text.contains("walrus") && text.contains("by alice"), "{text}");

    // Pulled memory is never pushed back, and the link says it is connected with nothing left.
    assert_eq!(outbox(&b), 0);
    let (_, link) = b.get("/api/team");
    assert_eq!((link["enabled"].clone(), link["connected"].clone()), (json!(true), json!(true)), "{link}");
    assert_eq!((link["member"].as_str(), link["behind"].as_i64()), (Some("bob"), Some(0)), "{link}");
    assert_eq!(on_server(&pg, "true"), shared, "nothing from B");
    // The processing status carries the link too (what /stream and the tray follow).
    wait_for(LIMIT, "the status to carry the link", || {
        let (_, stats) = b.get("/api/stats");
        stats["team"]["connected"] == true && stats["team"]["member"] == "bob"
    });
}

#[test]
fn a_team_server_killed_mid_push_and_postgres_restarted_lose_and_duplicate_nothing() {
    let pg = Postgres::start();
    let mut team = TeamServer::start(&pg);
    let alice_key = team.add_member("alice", &["ledger"], &[]);
    let bob_key = team.add_member("bob", &["ledger"], &[]);
    let a = machine(&team, &alice_key, "ledger");
    let b = machine(&team, &bob_key, "ledger");

    // Memory keeps coming while the team server dies and PostgreSQL crashes and comes back.
    let done = std::sync::atomic::AtomicBool::new(false);
    let sessions = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let mut i = 0;
            while i < 6 || !done.load(std::sync::atomic::Ordering::SeqCst) {
                work(&a, &format!("a{i}"), "ledger", &format!("crash{i}"), 5);
                i += 1;
            }
            i
        });
        wait_for(LIMIT, "pushes under way", || on_server(&pg, "true") > 0);
        team.kill9();
        // While it is away capture goes on, the outbox holds what waits, and the link says since when.
        wait_for(LIMIT, "the outbox to fill while the server is away", || outbox(&a) > 0);
        wait_for(LIMIT, "the link to say the server is unreachable", || {
            let (_, link) = a.get("/api/team");
            let (_, stats) = a.get("/api/stats");
            link["connected"] == false
                && link["unreachableSince"].is_i64()
                && stats["team"]["unreachableSince"].is_i64()
        });
        pg.restart();
        team.spawn();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        producer.join().unwrap()
    });
    a.wait_idle(LIMIT);
    let shared = own_memory(&a, "ledger");
    assert!(shared >= sessions as i64 * 6, "{shared}");
    wait_for(LIMIT, "every memory on the server", || outbox(&a) == 0 && on_server(&pg, "true") >= shared);
    assert_eq!(on_server(&pg, "true"), shared, "exactly once");
    assert_eq!(pg.count("SELECT count(DISTINCT (origin_machine, kind, origin_id)) FROM memories"), shared);
    wait_for(LIMIT, "B to catch up", || pulled_from(&b, "alice") == shared);
    let (_, link) = b.get("/api/team");
    assert_eq!(link["behind"], 0, "{link}");
}

#[test]
fn two_team_servers_on_one_database_interleave_pushes_and_pulls_without_loss() {
    let pg = Postgres::start();
    let one = TeamServer::start(&pg);
    let two = TeamServer::start(&pg);
    let alice_key = one.add_member("alice", &["ledger"], &[]);
    let bob_key = one.add_member("bob", &["ledger"], &[]);
    let carol_key = one.add_member("carol", &["ledger"], &[]);
    let a = machine(&one, &alice_key, "ledger");
    let b = machine(&two, &bob_key, "ledger");
    let c = machine(&two, &carol_key, "ledger");
    std::thread::scope(|scope| {
        for (server, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            scope.spawn(move || {
                for i in 0..6 {
                    work(server, &format!("{name}{i}"), "ledger", &format!("{name}word{i}"), 4);
                }
            });
        }
    });
    for m in [&a, &b, &c] {
        m.wait_idle(LIMIT);
    }
    let (from_a, from_b, from_c) = (own_memory(&a, "ledger"), own_memory(&b, "ledger"), own_memory(&c, "ledger"));
    let total = from_a + from_b + from_c;
    wait_for(LIMIT, "all pushed", || [&a, &b, &c].iter().all(|m| outbox(m) == 0) && on_server(&pg, "true") >= total);
    assert_eq!(on_server(&pg, "true"), total, "no duplicate on the server");
    wait_for(LIMIT, "every machine to have the others' memory", || {
        pulled_from(&a, "bob") == from_b
            && pulled_from(&a, "carol") == from_c
            && pulled_from(&b, "alice") == from_a
            && pulled_from(&b, "carol") == from_c
            && pulled_from(&c, "alice") == from_a
            && pulled_from(&c, "bob") == from_b
    });
    for m in [&a, &b, &c] {
        let pulled = m.count("SELECT count(*) FROM observations WHERE origin_machine IS NOT NULL")
            + m.count("SELECT count(*) FROM summaries WHERE origin_machine IS NOT NULL");
        assert_eq!(pulled + own_memory(m, "ledger"), total, "no duplicate locally");
    }
}

fn call(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let agent = support::http();
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut response = match (method, body) {
        ("POST", Some(body)) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send_json(body)
        }
        _ => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
    }
    .expect("request");
    (response.status().as_u16(), response.body_mut().read_json().unwrap_or(Value::Null))
}

fn push_body(project: &str, origin_id: i64) -> Value {
    json!({"machine": "m-test", "memories": [{
        "kind": "observation", "origin_id": origin_id, "project": project, "session": "s", "prompt_number": 1,
        "created_at": 1, "body": {"type": "change", "title": "keys and projects"}
    }]})
}

#[test]
fn keys_and_projects_are_checked_on_every_request() {
    let pg = Postgres::start();
    let team = TeamServer::start(&pg);
    let alice = team.add_member("alice", &["ledger"], &[]);
    let carol = team.add_member("carol", &["atlas"], &[]);
    let reader = team.add_member("rita", &["ledger"], &["--read-only"]);
    let url = |path: &str| format!("{}{path}", team.url());

    assert_eq!(call("GET", &url("/team/health"), None, None).0, 200);
    let (status, answer) = call("GET", &url("/team/whoami"), None, None);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    assert_eq!(call("GET", &url("/team/whoami"), Some("mtk_not-a-key"), None).0, 401);
    let (status, me) = call("GET", &url("/team/whoami"), Some(&alice), None);
    assert_eq!((status, me["member"].as_str()), (200, Some("alice")), "{me}");
    let (status, answer) = call("POST", &url("/team/push"), Some(&alice), Some(&push_body("ledger", 1)));
    assert_eq!((status, answer["stored"].as_i64()), (200, Some(1)), "{answer}");
    let (_, again) = call("POST", &url("/team/push"), Some(&alice), Some(&push_body("ledger", 1)));
    assert_eq!((again["stored"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(1)), "idempotent: {again}");

    // Not in the project: neither push, pull nor search.
    let (status, answer) = call("POST", &url("/team/push"), Some(&carol), Some(&push_body("ledger", 2)));
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")), "{answer}");
    assert_eq!(call("GET", &url("/team/pull?project=ledger"), Some(&carol), None).0, 403);
    assert_eq!(call("GET", &url("/team/search?q=keys&project=ledger"), Some(&carol), None).0, 403);
    let (status, hits) = call("GET", &url("/team/search?q=keys"), Some(&carol), None);
    assert_eq!((status, hits["hits"].as_array().map(Vec::len)), (200, Some(0)), "{hits}");
    assert_eq!(on_server(&pg, "true"), 1);
    // Read-only: pulls and searches, never pushes.
    assert_eq!(call("POST", &url("/team/push"), Some(&reader), Some(&push_body("ledger", 3))).0, 403);
    let (status, page) = call("GET", &url("/team/pull?project=ledger"), Some(&reader), None);
    assert_eq!((status, page["memories"].as_array().map(Vec::len)), (200, Some(1)), "{page}");
    let (status, hits) = call("GET", &url("/team/search?q=projects"), Some(&reader), None);
    assert_eq!((status, hits["hits"][0]["memory"]["author"].as_str()), (200, Some("alice")), "{hits}");

    // Granting takes effect at once, and so does revoking.
    team.admin(&["grant", "carol", "ledger"]);
    assert_eq!(call("GET", &url("/team/pull?project=ledger"), Some(&carol), None).0, 200);
    team.admin(&["revoke", "alice"]);
    let (status, answer) = call("GET", &url("/team/pull?project=ledger"), Some(&alice), None);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    assert_eq!(call("POST", &url("/team/push"), Some(&alice), Some(&push_body("ledger", 4))).0, 401);
    let list = team.admin(&["list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    let alice_row = list.as_array().unwrap().iter().find(|m| m["name"] == "alice").unwrap();
    assert_eq!(alice_row["revoked"], true, "{list}");
    assert!(!list.to_string().contains(&alice[4..]), "keys are never stored or shown again");
    // A revoked name can be added again with a new key.
    let alice2 = team.add_member("alice", &["ledger"], &[]);
    assert_ne!(alice2, alice);
    assert_eq!(call("GET", &url("/team/whoami"), Some(&alice2), None).0, 200);
}

#[test]
fn a_machine_whose_key_is_refused_keeps_capturing_and_says_why() {
    let pg = Postgres::start();
    let team = TeamServer::start(&pg);
    let a = machine(&team, "mtk_wrong", "ledger");
    work(&a, "a1", "ledger", "orca", 2);
    a.wait_idle(LIMIT);
    assert!(own_memory(&a, "ledger") >= 3, "capture never waits on the team server");
    wait_for(LIMIT, "the link to report the refusal", || {
        let (_, link) = a.get("/api/team");
        link["connected"] == false && link["lastError"].as_str().is_some_and(|e| e.contains("401"))
    });
    assert_eq!(outbox(&a), own_memory(&a, "ledger"), "kept for when the key works");
}

#[test]
fn a_project_the_member_is_not_in_stays_queued_and_holds_up_no_other() {
    let pg = Postgres::start();
    let team = TeamServer::start(&pg);
    let alice_key = team.add_member("alice", &["ledger"], &[]);
    let a = machine(&team, &alice_key, "atlas,ledger");
    // atlas first, so its refused batch comes first in the outbox.
    work(&a, "a-atlas", "atlas", "beluga", 2);
    a.wait_idle(LIMIT);
    work(&a, "a-ledger", "ledger", "walrus", 2);
    a.wait_idle(LIMIT);
    let (atlas, ledger) = (own_memory(&a, "atlas"), own_memory(&a, "ledger"));
    wait_for(LIMIT, "ledger's memory on the server", || on_server(&pg, "project = 'ledger'") == ledger);
    wait_for(LIMIT, "the refusal reported", || {
        let (_, link) = a.get("/api/team");
        link["lastError"].as_str().is_some_and(|e| e.contains("403") && e.contains("atlas"))
    });
    assert_eq!(outbox(&a), atlas, "atlas waits for a grant");
    assert_eq!(on_server(&pg, "project = 'atlas'"), 0);
    team.admin(&["grant", "alice", "atlas"]);
    wait_for(LIMIT, "atlas pushed once granted", || outbox(&a) == 0 && on_server(&pg, "project = 'atlas'") == atlas);
}

#[test]
fn a_team_server_that_never_answers_does_not_hold_up_capture_or_shutdown() {
    // Accepts connections and never answers: a request to it hangs until its timeout (a minute).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (accepted, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    let home = tempfile::tempdir().unwrap();
    let mut a = TestServer::start(&[
        ("HOME", home.path().to_str().unwrap()),
        ("MEMTRAY_TEAM_URL", &url),
        ("MEMTRAY_TEAM_KEY", "mtk_any"),
        ("MEMTRAY_TEAM_SHARE", "ledger"),
        ("MEMTRAY_TEAM_SYNC_MS", "50"),
    ]);
    seen.recv_timeout(LIMIT).expect("the link to call the team server");
    work(&a, "a1", "ledger", "octopus", 2);
    a.wait_idle(LIMIT);
    assert!(outbox(&a) >= 3, "capture goes on and queues");
    let start = std::time::Instant::now();
    let status = a.stop();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(8), "stopping took {:?}", start.elapsed());
}
