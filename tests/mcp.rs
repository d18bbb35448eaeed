//! `memtray mcp` as Claude Code runs it: the real binary as a child process, spoken to over its stdio with
//! rmcp's client. The database is filled by the real server from real events; the MCP server reads it
//! read-only while the server runs and after it stopped. Tool failures come back as tool errors and the
//! server keeps serving.

mod support;

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use support::{TestServer, observation};

type Client = RunningService<RoleClient, ()>;

/// Starts `memtray mcp` with the server's data dir and connects to it (the MCP handshake included).
async fn connect(server: &TestServer) -> Client {
    let command = tokio::process::Command::from(server.command("mcp"));
    let transport = TokioChildProcess::new(command).expect("spawn memtray mcp");
    tokio::time::timeout(Duration::from_secs(20), ().serve(transport))
        .await
        .expect("handshake in time")
        .expect("MCP handshake")
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
    let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    tokio::time::timeout(Duration::from_secs(20), client.call_tool(request))
        .await
        .expect("answer in time")
        .expect("tools/call")
}

fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.clone()).collect::<Vec<_>>().join("\n")
}

fn ok(result: CallToolResult) -> String {
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    text(&result)
}

fn failed(result: CallToolResult) -> String {
    assert_eq!(result.is_error, Some(true), "expected a tool error: {}", text(&result));
    text(&result)
}

fn fill(server: &TestServer) {
    let init = |session: &str, project: &str, prompt: &str| {
        let body = json!({"claudeSessionId": session, "project": project, "prompt": prompt});
        assert_eq!(server.post("/api/sessions/init", &body).0, 200);
    };
    let tool = |session: &str, id: &str, command: &str| {
        let mut body = observation(session, id, "Bash");
        body["tool_input"] = json!({"command": command});
        assert_eq!(server.post("/api/sessions/observations", &body).0, 200);
    };
    init("m1", "ledger", "speed up the okapi importer");
    tool("m1", "t1", "cargo build --bin importer");
    tool("m1", "t2", "cargo test okapi_import");
    tool("m1", "t3", "cargo bench okapi");
    let body = json!({"claudeSessionId": "m1", "last_assistant_message": "done"});
    assert_eq!(server.post("/api/sessions/summarize", &body).0, 200);
    init("m2", "atlas", "draw the okapi map");
    tool("m2", "t4", "cargo run --bin okapi-map");
    server.wait_idle(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_searches_and_reads_memory_over_mcp() {
    let mut server = TestServer::start(&[]);
    fill(&server);
    let client = connect(&server).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().map(|i| i.name.as_str()), Some("memtray"));
    assert!(info.instructions.as_deref().is_some_and(|i| i.contains("recent_context")));

    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, ["get_observations", "recent_context", "search", "timeline"]);
    for tool in &tools {
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 60), "{} needs a description", tool.name);
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
    }
    let search_schema = &tools.iter().find(|t| t.name == "search").unwrap().input_schema;
    assert_eq!(search_schema["required"], json!(["query"]), "{search_schema:?}");

    // search: a compact index, best first.
    let index = ok(call(&client, "search", json!({"query": "okapi"})).await);
    assert!(index.contains("hits for \"okapi\""), "{index}");
    for expected in ["observation #", "summary #", "prompt #", "| ledger |", "| atlas |", "| test |"] {
        assert!(index.contains(expected), "{expected} missing from:\n{index}");
    }
    let only_ledger = ok(call(&client, "search", json!({"query": "okapi", "project": "ledger", "limit": 50})).await);
    assert!(!only_ledger.contains("atlas"), "{only_ledger}");
    let typed = ok(call(&client, "search", json!({"query": "okapi", "type": "test"})).await);
    assert!(typed.starts_with("1 hits"), "{typed}");
    let prompts = ok(call(&client, "search", json!({"query": "okapi", "kinds": ["prompt"]})).await);
    assert!(prompts.starts_with("2 hits") && !prompts.contains("observation #"), "{prompts}");
    assert!(ok(call(&client, "search", json!({"query": "zebra"})).await).contains("No memory matches"));

    // get_observations: the full records of ids from the index.
    let ids: Vec<i64> = typed
        .lines()
        .filter_map(|l| l.strip_prefix("observation #"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    let records = ok(call(&client, "get_observations", json!({"ids": [ids[0], 9999]})).await);
    let (json_part, missing) = records.split_once("\nNot found: ").expect("the missing id is named");
    assert_eq!(missing, "[9999]");
    let records: Value = serde_json::from_str(json_part).unwrap();
    let record = &records[0];
    assert_eq!((record["id"].as_i64(), record["type"].as_str()), (Some(ids[0]), Some("test")));
    assert_eq!((record["project"].as_str(), record["tool_name"].as_str()), (Some("ledger"), Some("Bash")));
    assert!(record["facts"].as_array().is_some_and(|f| !f.is_empty()), "{record}");

    // timeline: the observations around one, in time order, the centre marked.
    let timeline = ok(call(&client, "timeline", json!({"observation_id": ids[0], "before": 1, "after": 1})).await);
    let lines: Vec<&str> = timeline.lines().collect();
    assert_eq!(lines.len(), 3, "{timeline}");
    assert!(lines[1].starts_with(&format!("> #{}", ids[0])), "{timeline}");
    assert!(lines.iter().all(|l| l.contains("| ledger |")), "its own project by default: {timeline}");
    let at = ok(call(&client, "timeline", json!({"at": "2000-01-01", "after": 50})).await);
    assert_eq!(at.lines().count(), 4, "all four observations come after 2000: {at}");

    // recent_context: the project's recent memory as text.
    let context = ok(call(&client, "recent_context", json!({"project": "ledger"})).await);
    assert!(context.starts_with("# Recent memory of ledger"), "{context}");
    assert!(context.contains("## Session m1") && context.contains("summary: speed up the okapi importer"), "{context}");
    assert!(!context.contains("atlas"));
    let short = ok(call(&client, "recent_context", json!({"project": "ledger", "chars": 150})).await);
    assert!(short.chars().count() <= 150, "{short}");
    assert!(ok(call(&client, "recent_context", json!({"project": "nowhere"})).await).contains("no memory"));

    // Tool errors: clear words, isError set, and the server goes on.
    assert!(failed(call(&client, "search", json!({"query": "  ((( "})).await).contains("no words"));
    assert!(
        failed(call(&client, "search", json!({"query": "okapi", "kinds": ["note"]})).await).contains("unknown kind")
    );
    assert!(
        failed(call(&client, "timeline", json!({"observation_id": 424242})).await).contains("no observation #424242")
    );
    assert!(failed(call(&client, "timeline", json!({})).await).contains("exactly one"));
    assert!(failed(call(&client, "timeline", json!({"at": "last tuesday"})).await).contains("YYYY-MM-DD"));
    assert!(failed(call(&client, "get_observations", json!({"ids": []})).await).contains("between 1 and 50"));
    assert!(failed(call(&client, "get_observations", json!({"ids": [5555]})).await).contains("no observation"));
    // Arguments of the wrong type are refused as a tool error too.
    let wrong = failed(call(&client, "get_observations", json!({"ids": "all"})).await);
    assert!(wrong.contains("ids") || wrong.contains("invalid"), "{wrong}");
    assert!(ok(call(&client, "search", json!({"query": "okapi"})).await).contains("hits"), "still serving");

    // Without the server the same database answers, read-only.
    server.stop();
    let after = ok(call(&client, "search", json!({"query": "okapi"})).await);
    assert_eq!(after, index);
    client.cancel().await.expect("close the session");
    let fresh = connect(&server).await;
    assert_eq!(ok(call(&fresh, "search", json!({"query": "okapi"})).await), index);
    fresh.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_yet_is_a_tool_error_not_a_crash() {
    let server = TestServer::start(&[]);
    let mut server = server;
    server.stop();
    std::fs::remove_file(server.database()).unwrap();
    let client = connect(&server).await;
    let answer = failed(call(&client, "search", json!({"query": "anything"})).await);
    assert!(answer.contains("no memtray database"), "{answer}");
    assert!(
        failed(call(&client, "recent_context", json!({"project": "ledger"})).await).contains("no memtray database")
    );
    assert!(!server.database().exists(), "a read-only server creates no database");
    client.cancel().await.unwrap();
}

/// `memtray` with `home` as HOME and nothing else of the machine's.
fn memtray_at_home(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memtray"))
        .args(args)
        .env("HOME", home)
        .env("MEMTRAY_CONFIG", home.join("none.toml"))
        .env("MEMTRAY_DATA_DIR", home.join("data"))
        .env_remove("MEMTRAY_PORT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn install_hooks_registers_the_mcp_server_with_claude_code() {
    let home = tempfile::tempdir().unwrap();
    let claude_json = home.path().join(".claude.json");
    let original = json!({"numStartups": 3, "mcpServers": {"other": {"command": "other-mcp"}}, "projects": {}});
    std::fs::write(&claude_json, serde_json::to_string_pretty(&original).unwrap()).unwrap();

    let out = memtray_at_home(home.path(), &["install-hooks", "--dry-run"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(".claude.json would change") && shown.contains("+     \"memtray\": {"), "{shown}");
    assert_eq!(read(&claude_json), original, "a dry run writes nothing");

    memtray_at_home(home.path(), &["install-hooks"]);
    let installed = read(&claude_json);
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_memtray")).unwrap();
    let entry = &installed["mcpServers"]["memtray"];
    assert_eq!((entry["type"].as_str(), entry["args"].clone()), (Some("stdio"), json!(["mcp"])));
    assert_eq!(std::fs::canonicalize(entry["command"].as_str().unwrap()).unwrap(), binary);
    assert_eq!(installed["mcpServers"]["other"], original["mcpServers"]["other"]);
    assert_eq!((installed["numStartups"].clone(), installed["projects"].clone()), (json!(3), json!({})));
    let bytes = std::fs::read(&claude_json).unwrap();
    memtray_at_home(home.path(), &["install-hooks"]);
    assert_eq!(std::fs::read(&claude_json).unwrap(), bytes, "installing twice changes nothing");

    // Project scope: the project's .mcp.json; --no-mcp leaves it out.
    let project = home.path().join("ledger");
    memtray_at_home(home.path(), &["install-hooks", "--project", project.to_str().unwrap()]);
    assert_eq!(read(&project.join(".mcp.json"))["mcpServers"]["memtray"]["args"], json!(["mcp"]));
    let plain = home.path().join("plain");
    memtray_at_home(home.path(), &["install-hooks", "--no-mcp", "--project", plain.to_str().unwrap()]);
    assert!(plain.join(".claude/settings.json").exists() && !plain.join(".mcp.json").exists());

    memtray_at_home(home.path(), &["uninstall-hooks"]);
    assert_eq!(read(&claude_json), original, "uninstall removes exactly memtray's entry");
    memtray_at_home(home.path(), &["uninstall-hooks", "--project", project.to_str().unwrap()]);
    assert_eq!(read(&project.join(".mcp.json")), json!({}));
}
