//! The embedded offline provider: reads a tool use's JSON once into an `Action` (what the tool did, as data)
//! and writes that down as exactly one observation; tells a session span from the same actions, read from the
//! span's tool uses, and the agent's last message (never from the observations' wording). There is one
//! reading rule per tool family (files, shell, search, web, subagents, todos, MCP) and a fallback for any other
//! tool. It uses no network and no model, and the same input always gives the same memory.

use serde_json::Value;

use super::provider::{Made, Observed, Provider, ProviderError, SessionContext, Summarized};
use crate::memory::{NewObservation, NewSummary};
use crate::queue::message::{SummaryRequest, ToolUse};

/// Longest title, in characters.
const TITLE_MAX: usize = 80;
/// Longest fact or subtitle, in characters.
const FACT_MAX: usize = 160;
/// Longest value quoted inside a title or a generic fact.
const VALUE_MAX: usize = 60;
/// Longest summary field taken from free text (request, fallback, next steps).
const TEXT_MAX: usize = 300;
/// Most matched files an observation lists.
const FILES_MAX: usize = 20;
/// Most items a summary sentence lists before "+N more".
const DIGEST_MAX: usize = 6;
/// Most facts taken from an unknown tool's input.
const INPUT_FACTS_MAX: usize = 8;

const DISCOVERY: &str = "discovery";
const CHANGE: &str = "change";
const COMMAND: &str = "command";
const TEST: &str = "test";
const RESEARCH: &str = "research";
const DECISION: &str = "decision";
const FAILURE: &str = "failure";

/// Deterministic, offline: reads the tool use and writes down what it shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProvider;

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn observe(&self, _ctx: &SessionContext, tools: &[ToolUse]) -> Result<Observed, ProviderError> {
        Ok(Made::free(tools.iter().map(|tool| vec![observe_tool(tool)]).collect()))
    }

    async fn summarize(&self, ctx: &SessionContext, request: &SummaryRequest) -> Result<Summarized, ProviderError> {
        Ok(Made::free(Some(summarize_span(ctx, request))))
    }
}

impl LocalProvider {
    /// The observation of one tool use, at once (what the fallback writes).
    pub fn observation(tool: &ToolUse) -> NewObservation {
        observe_tool(tool)
    }

    /// The summary of a span, at once (what the fallback writes).
    pub fn summary(ctx: &SessionContext, request: &SummaryRequest) -> NewSummary {
        summarize_span(ctx, request)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Actions: one reading of a tool use
// ---------------------------------------------------------------------------------------------------------------

/// What one tool use did, read once from its JSON. The observation and the summary are two renderings of it;
/// neither reads the other's wording.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// `Read`: a file, and how much of it.
    Read { path: Option<String>, extent: Option<Extent> },
    /// `Edit`, `MultiEdit`, `Write`, `NotebookEdit`: one file changed.
    Change { path: Option<String>, change: Change },
    /// `Grep` or `Glob`.
    Search(Search),
    /// `Bash`: a command, whether it ran tests, and how it ended.
    Command { command: Option<String>, description: Option<String>, runs_tests: bool, outcome: Outcome },
    /// `WebFetch`: a page, what was asked of it, the HTTP status and its text.
    Fetch { url: Option<String>, prompt: Option<String>, status: Option<(u64, String)> },
    /// `WebSearch`: the query, its domain limits, how many results.
    WebSearch {
        query: Option<String>,
        allowed_domains: Vec<String>,
        blocked_domains: Vec<String>,
        results: Option<u64>,
    },
    /// `Task` / `Agent`: what the subagent was asked and the first sentence it answered.
    Subagent {
        description: Option<String>,
        agent: Option<String>,
        prompt: Option<String>,
        answer: Option<String>,
        tool_uses: Option<u64>,
    },
    /// `TodoWrite`: the plan as it stands.
    Todos(Vec<Todo>),
    /// `mcp__server__tool`.
    Mcp { server: String, tool: String, input: Arguments },
    /// Any other tool (`name` may be empty).
    Other { name: String, input: Arguments },
}

/// How much of a file a `Read` covered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extent {
    /// Lines `start..=end` of a file of `total` lines.
    Part { start: u64, end: u64, total: u64 },
    /// This many lines, the whole file as far as the response says.
    Lines(u64),
    /// Only the file's length is known.
    Total(u64),
    /// No response said; the input asked for lines from `offset` (`limit` of them, when it said).
    RequestedFrom { offset: u64, limit: Option<u64> },
    /// No response said; the input asked for the first `limit` lines.
    RequestedFirst(u64),
}

/// What a change did to its file.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// `Edit` / `MultiEdit`: its replacements.
    Edit(Vec<EditSpan>),
    /// `Write`: how many lines, and whether the file was new (`None`: the response does not say).
    Write { lines: Option<u64>, created: Option<bool> },
    /// `NotebookEdit`: what happened to which cell.
    Cell { edit: CellEdit, cell: Option<String>, source_lines: Option<u64> },
}

/// What a `NotebookEdit` did to its cell.
#[derive(Debug, Clone, PartialEq)]
enum CellEdit {
    Insert { cell_type: Option<String> },
    Delete,
    Replace,
}

/// A search: in file contents (`Grep`) or file names (`Glob`).
#[derive(Debug, Clone, PartialEq)]
struct Search {
    target: SearchTarget,
    pattern: Option<String>,
    /// The folder searched, relative to `cwd` when under it.
    scope: Option<String>,
    /// `Grep` only: the file filters.
    glob: Option<String>,
    file_type: Option<String>,
    /// How many files matched (or were found).
    files_found: Option<u64>,
    /// `Grep` only: lines of matches, when more than none.
    match_lines: Option<u64>,
    /// `Glob` only: the response was cut short, so `files_found` is a lower bound.
    truncated: bool,
    /// `Grep` only: the matched files as listed, relative to `cwd` (not yet capped or deduplicated).
    files: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SearchTarget {
    Contents,
    Names,
}

/// How a shell command ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Its output ends with a test summary (cargo's added up, pytest's, jest's, go's counted).
    Tests(String),
    /// The response says how it ended: an exit code, an interruption, or both.
    Ended { exit_code: Option<i64>, interrupted: bool },
    /// Neither: the output line that best says how it went, if there was output.
    Output(Option<String>),
}

/// One item of a todo list.
#[derive(Debug, Clone, PartialEq)]
struct Todo {
    content: String,
    /// `pending`, `in_progress`, `completed` (as the agent wrote it).
    status: String,
}

/// A tool's input, as far as it can be shown: its scalar fields, or its shape.
#[derive(Debug, Clone, PartialEq)]
enum Arguments {
    /// An object's top-level scalar fields, in order.
    Fields(Vec<(String, String)>),
    /// A list of this many items.
    Items(u64),
    /// A bare scalar, or nothing to show.
    Value(Option<String>),
}

impl Action {
    /// Reads a tool use: one rule per tool family, a fallback for any other tool. Never fails.
    fn read(tool: &ToolUse) -> Action {
        let call = Call { input: &tool.tool_input, response: &tool.tool_response, cwd: &tool.cwd };
        let name = tool.tool_name.trim();
        match name {
            "Read" => Action::Read { path: call.file_path(), extent: extent(&call) },
            "Edit" | "MultiEdit" => {
                Action::Change { path: call.file_path(), change: Change::Edit(edit_spans(call.input)) }
            }
            "Write" => Action::Change { path: call.file_path(), change: written(&call) },
            "NotebookEdit" => Action::Change { path: call.file_path(), change: cell_edit(&call) },
            "Bash" => command(&call),
            "Grep" => Action::Search(grep(&call)),
            "Glob" => Action::Search(glob(&call)),
            "WebFetch" => web_fetch(&call),
            "WebSearch" => web_search(&call),
            "Task" | "Agent" => subagent(&call),
            "TodoWrite" => Action::Todos(todos(call.input)),
            _ => match mcp_name(name) {
                Some((server, tool)) => {
                    Action::Mcp { server: server.to_string(), tool: tool.to_string(), input: arguments(call.input) }
                }
                None => Action::Other { name: name.to_string(), input: arguments(call.input) },
            },
        }
    }

    /// The files the tool read, as memory lists them: distinct, a search's matches capped.
    fn files_read(&self) -> Vec<String> {
        match self {
            Action::Read { path, .. } => distinct(path.iter().cloned()),
            Action::Search(search) => distinct(search.files.iter().take(FILES_MAX).cloned()),
            _ => Vec::new(),
        }
    }

    /// The files the tool changed.
    fn files_modified(&self) -> Vec<String> {
        match self {
            Action::Change { path, .. } => distinct(path.iter().cloned()),
            _ => Vec::new(),
        }
    }
}

/// One tool use as the rules read it.
struct Call<'a> {
    input: &'a Value,
    response: &'a Value,
    cwd: &'a str,
}

impl<'a> Call<'a> {
    /// A non-blank string field of the input.
    fn input_text(&self, key: &str) -> Option<&'a str> {
        text_at(self.input, key)
    }

    /// A non-blank string field of the input, owned.
    fn input_string(&self, key: &str) -> Option<String> {
        self.input_text(key).map(str::to_string)
    }

    /// `path`, relative to the session's working directory when under it.
    fn relative(&self, path: &str) -> String {
        relative_to(path, self.cwd)
    }

    /// The file the tool worked on: from the input, else from the response; relative when under `cwd`.
    fn file_path(&self) -> Option<String> {
        ["file_path", "notebook_path", "path"]
            .iter()
            .find_map(|key| self.input_text(key))
            .or_else(|| text_at(self.response, "filePath"))
            .or_else(|| self.response.get("file").and_then(|file| text_at(file, "filePath")))
            .map(|path| self.relative(path))
    }

    /// One output stream of a shell response (a bare string response counts as stdout), colours removed.
    fn stream(&self, key: &str) -> String {
        let raw = match self.response {
            Value::String(s) if key == "stdout" => s.as_str(),
            other => other.get(key).and_then(Value::as_str).unwrap_or(""),
        };
        strip_ansi(raw)
    }
}

// --- Files -----------------------------------------------------------------------------------------------------

/// The lines a `Read` returned, from the response when it says, else the range the input asked for.
fn extent(call: &Call) -> Option<Extent> {
    let file = call.response.get("file").unwrap_or(&Value::Null);
    let start = uint_at(file, "startLine").unwrap_or(1).max(1);
    match (uint_at(file, "numLines"), uint_at(file, "totalLines")) {
        (Some(num), Some(total)) if num > 0 && num < total => {
            Some(Extent::Part { start, end: start.saturating_add(num - 1), total })
        }
        (Some(num), _) => Some(Extent::Lines(num)),
        (None, Some(total)) => Some(Extent::Total(total)),
        (None, None) => match (uint_at(call.input, "offset"), uint_at(call.input, "limit")) {
            (Some(offset), limit) => Some(Extent::RequestedFrom { offset, limit }),
            (None, Some(limit)) => Some(Extent::RequestedFirst(limit)),
            (None, None) => None,
        },
    }
}

/// One replacement of an `Edit` or `MultiEdit`.
#[derive(Debug, Clone, PartialEq)]
struct EditSpan {
    old_lines: u64,
    new_lines: u64,
    replace_all: bool,
}

impl EditSpan {
    fn from_json(edit: &Value) -> EditSpan {
        let lines = |key| edit.get(key).and_then(Value::as_str).map_or(0, line_count);
        EditSpan {
            old_lines: lines("old_string"),
            new_lines: lines("new_string"),
            replace_all: edit.get("replace_all").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// The replacements an edit input describes: its `edits` list, or itself.
fn edit_spans(input: &Value) -> Vec<EditSpan> {
    match input.get("edits").and_then(Value::as_array) {
        Some(edits) => edits.iter().map(EditSpan::from_json).collect(),
        None if input.get("old_string").is_some() || input.get("new_string").is_some() => {
            vec![EditSpan::from_json(input)]
        }
        None => Vec::new(),
    }
}

/// `Write`: how long the content is, and whether the response says the file was created or replaced.
fn written(call: &Call) -> Change {
    let lines = call.input.get("content").and_then(Value::as_str).map(line_count);
    let created = match text_at(call.response, "type") {
        Some("create") => Some(true),
        Some("update") => Some(false),
        _ => None,
    };
    Change::Write { lines, created }
}

/// `NotebookEdit`: which cell, what happened to it, how long its new source is.
fn cell_edit(call: &Call) -> Change {
    let edit = match call.input_text("edit_mode") {
        Some("insert") => CellEdit::Insert { cell_type: call.input_string("cell_type") },
        Some("delete") => CellEdit::Delete,
        _ => CellEdit::Replace,
    };
    let source_lines = call.input.get("new_source").and_then(Value::as_str).map(line_count);
    Change::Cell { edit, cell: call.input_string("cell_id"), source_lines }
}

// --- Shell -----------------------------------------------------------------------------------------------------

/// `Bash`: the command, its description, whether it ran tests, and how it ended.
fn command(call: &Call) -> Action {
    let command = call.input_text("command");
    Action::Command {
        command: command.map(str::to_string),
        description: call.input_string("description"),
        runs_tests: command.is_some_and(looks_like_tests),
        outcome: shell_outcome(call),
    }
}

/// How a shell command ended: a test result, else the exit code and interruption, else its last words.
fn shell_outcome(call: &Call) -> Outcome {
    let (stdout, stderr) = (call.stream("stdout"), call.stream("stderr"));
    if let Some(result) = test_result(&stdout).or_else(|| test_result(&stderr)) {
        return Outcome::Tests(result);
    }
    let exit_code = exit_code(call.response);
    let interrupted = call.response.get("interrupted").and_then(Value::as_bool) == Some(true);
    if exit_code.is_some() || interrupted {
        return Outcome::Ended { exit_code, interrupted };
    }
    Outcome::Output(last_output_line(&stdout, &stderr))
}

/// The exit code, under any of the names shells and hook versions use.
fn exit_code(response: &Value) -> Option<i64> {
    ["exit_code", "exitCode", "returnCode", "return_code"].iter().find_map(|key| {
        let value = response.get(*key)?;
        value.as_i64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
    })
}

/// The line that best says how a command went: stderr's last line when it mentions an error, else stdout's,
/// else stderr's.
fn last_output_line(stdout: &str, stderr: &str) -> Option<String> {
    let err = last_line(stderr);
    if stderr.to_lowercase().contains("error") {
        return err;
    }
    last_line(stdout).or(err)
}

fn last_line(text: &str) -> Option<String> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty()).map(str::to_string)
}

/// Programs that run tests whatever their arguments.
const TEST_RUNNERS: &[&str] =
    &["pytest", "py.test", "jest", "vitest", "mocha", "rspec", "phpunit", "ctest", "tox", "nox", "unittest", "nextest"];

/// Programs that run tests when their subcommand says so (`cargo test`, `npm run test:unit`, `uv run pytest`).
#[rustfmt::skip]
const TEST_HOSTS: &[&str] = &[
    "cargo", "go", "make", "just", "swift", "zig", "dotnet", "mix", "mvn", "gradle", "gradlew",
    "npm", "pnpm", "yarn", "bun", "deno", "playwright",
    "python", "python3", "uv", "poetry", "pipenv", "hatch", "bundle", "rails",
];

/// Words that only prefix the real program (`sudo`, `npx`, `timeout 60`, `RUST_LOG=debug`).
const COMMAND_PREFIXES: &[&str] = &["sudo", "time", "env", "nice", "exec", "npx", "bunx", "pnpx", "timeout", "command"];

/// True when some part of a shell command line runs a test suite.
fn looks_like_tests(command: &str) -> bool {
    command.split(['&', ';', '|', '\n', '(', ')']).any(segment_runs_tests)
}

fn segment_runs_tests(segment: &str) -> bool {
    let words: Vec<&str> = segment.split_whitespace().skip_while(|word| is_command_prefix(word)).collect();
    let Some((first, rest)) = words.split_first() else {
        return false;
    };
    let program = file_name(first);
    TEST_RUNNERS.contains(&program) || (TEST_HOSTS.contains(&program) && subcommand_is_test(rest))
}

fn is_command_prefix(word: &str) -> bool {
    COMMAND_PREFIXES.contains(&word)
        || word.starts_with(|c: char| c.is_ascii_digit())
        || (word.contains('=') && !word.starts_with('-'))
}

/// The first real argument (skipping flags and one `run`/`exec`) names tests or a test runner.
fn subcommand_is_test(args: &[&str]) -> bool {
    let mut words = args.iter().copied().take_while(|w| *w != "--").filter(|w| !w.starts_with(['-', '+']));
    let word = match words.next() {
        Some("run" | "exec") => words.next(),
        word => word,
    };
    word.is_some_and(|w| w.starts_with("test") || w == "t" || TEST_RUNNERS.contains(&file_name(w)))
}

/// The test summary in a command's output: cargo's `test result:` lines (added up), a pytest/jest/vitest/mocha
/// count line, or go's package lines.
fn test_result(output: &str) -> Option<String> {
    cargo_result(output).or_else(|| counted_result(output)).or_else(|| go_result(output))
}

fn cargo_result(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().filter_map(|l| l.trim().strip_prefix("test result:")).collect();
    if lines.is_empty() {
        return None;
    }
    let failed_any = lines.iter().any(|l| l.trim_start().starts_with("FAILED"));
    let sum = |word| lines.iter().filter_map(|l| number_before(l, word)).sum::<u64>();
    let status = if failed_any { "FAILED" } else { "ok" };
    let mut result = format!("test result: {status}. {} passed; {} failed", sum("passed"), sum("failed"));
    if lines.len() > 1 {
        result.push_str(&format!(" ({} suites)", lines.len()));
    }
    Some(result)
}

/// The last line counting passed/failed tests (pytest's `== 3 passed in 0.1s ==`, jest's `Tests: 14 passed`).
fn counted_result(output: &str) -> Option<String> {
    let line = output.lines().rfind(|line| {
        ["passed", "failed", "passing", "failing"].iter().any(|word| number_before(line, word).is_some())
    })?;
    Some(one_line(line.trim().trim_matches('=').trim()))
}

/// Go's per-package `ok` / `FAIL` lines, counted.
fn go_result(output: &str) -> Option<String> {
    let package_lines = |status: &str| {
        output.lines().filter(|l| l.contains('\t') && l.split_whitespace().next() == Some(status)).count() as u64
    };
    let (ok, failed) = (package_lines("ok"), package_lines("FAIL"));
    (ok + failed > 0).then(|| format!("{} ok; {failed} failed", count(ok, "package")))
}

/// The number right before `word` in `text` ("14 passed; 0 failed" → 14 for "passed").
fn number_before(text: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric())).collect();
    words.windows(2).find(|pair| pair[1] == word).and_then(|pair| pair[0].parse().ok())
}

// --- Search ----------------------------------------------------------------------------------------------------

/// `Grep`: the pattern, where, the filters, and which files matched.
fn grep(call: &Call) -> Search {
    let files = listed_files(call);
    Search {
        target: SearchTarget::Contents,
        pattern: call.input_string("pattern"),
        scope: search_scope(call),
        glob: call.input_string("glob"),
        file_type: call.input_string("type"),
        files_found: uint_at(call.response, "numFiles").or(files.as_ref().map(|f| f.len() as u64)),
        match_lines: uint_at(call.response, "numLines").filter(|n| *n > 0),
        truncated: false,
        files: files.unwrap_or_default(),
    }
}

/// `Glob`: the pattern, where, and how many files it found.
fn glob(call: &Call) -> Search {
    Search {
        target: SearchTarget::Names,
        pattern: call.input_string("pattern"),
        scope: search_scope(call),
        glob: None,
        file_type: None,
        files_found: uint_at(call.response, "numFiles").or(listed_files(call).map(|f| f.len() as u64)),
        match_lines: None,
        truncated: call.response.get("truncated").and_then(Value::as_bool) == Some(true),
        files: Vec::new(),
    }
}

/// The folder a search ran in, relative to `cwd` when under it.
fn search_scope(call: &Call) -> Option<String> {
    call.input_text("path").map(|path| call.relative(path))
}

/// The response's `filenames`, relative to `cwd`, when it has that list.
fn listed_files(call: &Call) -> Option<Vec<String>> {
    let names = call.response.get("filenames")?.as_array()?;
    Some(names.iter().filter_map(Value::as_str).map(|name| call.relative(name)).collect())
}

// --- Web and subagents -----------------------------------------------------------------------------------------

/// `WebFetch`: which page, what was asked of it, the HTTP status.
fn web_fetch(call: &Call) -> Action {
    let status =
        uint_at(call.response, "code").map(|code| (code, text_at(call.response, "codeText").unwrap_or("").to_string()));
    Action::Fetch { url: call.input_string("url"), prompt: call.input_string("prompt"), status }
}

/// `WebSearch`: the query, domain limits, how many results.
fn web_search(call: &Call) -> Action {
    let domains = |key| string_list(call.input, key).into_iter().map(str::to_string).collect();
    Action::WebSearch {
        query: call.input_string("query"),
        allowed_domains: domains("allowed_domains"),
        blocked_domains: domains("blocked_domains"),
        results: call.response.get("results").and_then(Value::as_array).map(|results| results.len() as u64),
    }
}

/// `Task` / `Agent`: what the subagent was asked and what it answered.
fn subagent(call: &Call) -> Action {
    Action::Subagent {
        description: call.input_string("description"),
        agent: call.input_string("subagent_type"),
        prompt: call.input_string("prompt"),
        answer: response_text(call.response).as_deref().and_then(first_sentence),
        tool_uses: uint_at(call.response, "totalToolUseCount"),
    }
}

/// The text a subagent answered: a bare string, `content` text blocks, or `result`.
fn response_text(response: &Value) -> Option<String> {
    if let Some(text) = response.as_str().or_else(|| text_at(response, "result")) {
        return Some(text.to_string());
    }
    let blocks = response.get("content")?.as_array()?;
    let text: Vec<&str> = blocks.iter().filter_map(|block| text_at(block, "text")).collect();
    (!text.is_empty()).then(|| text.join("\n"))
}

// --- Plans, MCP, anything else ---------------------------------------------------------------------------------

/// `TodoWrite`'s items that have content; a missing status counts as pending.
fn todos(input: &Value) -> Vec<Todo> {
    let items = input.get("todos").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter_map(|t| {
            let content = text_at(t, "content")?.to_string();
            Some(Todo { content, status: text_at(t, "status").unwrap_or("pending").to_string() })
        })
        .collect()
}

/// `mcp__server__tool` → `(server, tool)`.
fn mcp_name(name: &str) -> Option<(&str, &str)> {
    let (server, tool) = name.strip_prefix("mcp__")?.split_once("__")?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

/// The input's top-level scalar fields, or the input's shape when it is not an object.
fn arguments(input: &Value) -> Arguments {
    match input {
        Value::Object(fields) => {
            Arguments::Fields(fields.iter().filter_map(|(key, value)| Some((key.clone(), scalar(value)?))).collect())
        }
        Value::Array(items) => Arguments::Items(items.len() as u64),
        other => Arguments::Value(scalar(other)),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Observations: an action, written down
// ---------------------------------------------------------------------------------------------------------------

/// The one observation a tool use gives.
fn observe_tool(tool: &ToolUse) -> NewObservation {
    let obs = observation_of(&Action::read(tool));
    match tool.error.as_deref() {
        Some(error) => failed(obs, error),
        None => obs,
    }
}

/// A tool use that failed: what was tried, marked as failed, with the error as the first fact. A failed
/// change changed nothing.
fn failed(mut obs: NewObservation, error: &str) -> NewObservation {
    obs.kind = FAILURE.to_string();
    obs.title = clip(&format!("Failed: {}", obs.title), TITLE_MAX);
    let error = error.trim();
    obs.facts.insert(0, fact("error", if error.is_empty() { "no message" } else { error }));
    obs.files_modified.clear();
    obs
}

/// An action as an observation: its kind, title, subtitle and facts, and the files it touched.
fn observation_of(action: &Action) -> NewObservation {
    let mut obs = match action {
        Action::Read { path, extent } => read(path.as_deref(), *extent),
        Action::Change { path, change } => file_change(path.as_deref(), change),
        Action::Search(search) => match search.target {
            SearchTarget::Contents => grep_observation(search),
            SearchTarget::Names => glob_observation(search),
        },
        Action::Command { command, description, runs_tests, outcome } => {
            bash(command.as_deref(), description.as_deref(), *runs_tests, outcome)
        }
        Action::Fetch { url, prompt, status } => web_fetch_observation(url.as_deref(), prompt.as_deref(), status),
        Action::WebSearch { query, allowed_domains, blocked_domains, results } => {
            web_search_observation(query.as_deref(), allowed_domains, blocked_domains, *results)
        }
        Action::Subagent { description, agent, prompt, answer, tool_uses } => {
            let mut obs = observation(
                RESEARCH,
                &description.as_ref().map_or_else(|| "Ran a subagent".to_string(), |d| format!("Subagent: {d}")),
            );
            if let Some(agent) = agent {
                obs.subtitle = clip(&format!("{agent} agent"), FACT_MAX);
                obs.facts.push(fact("agent", agent));
            }
            obs.facts.extend(prompt.as_deref().map(|p| fact("prompt", p)));
            obs.facts.extend(answer.as_deref().map(|a| fact("result", a)));
            obs.facts.extend(tool_uses.map(|uses| count(uses, "tool use")));
            obs
        }
        Action::Todos(todos) => todo_list(todos),
        Action::Mcp { server, tool, input } => {
            let mut obs = observation(DISCOVERY, &format!("Used {tool} ({server})"));
            obs.subtitle = clip(&format!("MCP server {server}"), FACT_MAX);
            obs.facts = input_facts(input);
            obs
        }
        Action::Other { name, input } => {
            let title = if name.is_empty() { "Used an unnamed tool".to_string() } else { format!("Used {name}") };
            let mut obs = observation(DISCOVERY, &title);
            obs.facts = input_facts(input);
            obs
        }
    };
    obs.files_read = action.files_read();
    obs.files_modified = action.files_modified();
    obs
}

/// A fresh observation with its kind and (clipped) title.
fn observation(kind: &str, title: &str) -> NewObservation {
    NewObservation { kind: kind.to_string(), title: clip(title, TITLE_MAX), ..Default::default() }
}

/// `label: value`, on one line and clipped.
fn fact(label: &str, value: &str) -> String {
    clip(&format!("{label}: {value}"), FACT_MAX)
}

// --- Files -----------------------------------------------------------------------------------------------------

/// `Read`: what file, and how much of it.
fn read(path: Option<&str>, extent: Option<Extent>) -> NewObservation {
    let title = path.map_or_else(|| "Read a file".to_string(), |path| format!("Read {}", file_name(path)));
    let mut obs = observation(DISCOVERY, &title);
    obs.subtitle = path.map(|path| clip(path, FACT_MAX)).unwrap_or_default();
    obs.facts.extend(extent.map(extent_fact));
    obs
}

/// "read lines 100-149 of 400", "read 8 lines", "file has 8 lines", "requested 1 line from line 10".
fn extent_fact(extent: Extent) -> String {
    match extent {
        Extent::Part { start, end, total } => format!("read lines {start}-{end} of {total}"),
        Extent::Lines(num) => format!("read {}", count(num, "line")),
        Extent::Total(total) => format!("file has {}", count(total, "line")),
        Extent::RequestedFrom { offset, limit: Some(limit) } => {
            format!("requested {} from line {offset}", count(limit, "line"))
        }
        Extent::RequestedFrom { offset, limit: None } => format!("requested lines from {offset}"),
        Extent::RequestedFirst(limit) => format!("requested the first {}", count(limit, "line")),
    }
}

/// A change to one file: `<verb> <name>`, the path as subtitle, what changed as facts.
fn file_change(path: Option<&str>, change: &Change) -> NewObservation {
    let verb = match change {
        Change::Edit(_) | Change::Cell { .. } => "Edited",
        Change::Write { .. } => "Wrote",
    };
    let mut obs = match path {
        Some(path) => {
            let mut obs = observation(CHANGE, &format!("{verb} {}", file_name(path)));
            obs.subtitle = clip(path, FACT_MAX);
            obs
        }
        None => observation(CHANGE, &format!("{verb} a file")),
    };
    obs.facts = match change {
        Change::Edit(edits) => edit_facts(edits),
        Change::Write { lines, created } => write_facts(*lines, *created),
        Change::Cell { edit, cell, source_lines } => vec![cell_fact(edit, cell.as_deref(), *source_lines)],
    };
    obs
}

fn edit_facts(edits: &[EditSpan]) -> Vec<String> {
    if edits.is_empty() {
        return Vec::new();
    }
    let old = edits.iter().map(|e| e.old_lines).sum();
    let new = edits.iter().map(|e| e.new_lines).sum();
    let change = line_change(old, new);
    let mut facts = vec![if edits.len() > 1 { format!("{} edits: {change}", edits.len()) } else { change }];
    if edits.iter().any(|e| e.replace_all) {
        facts.push("replace_all: every occurrence replaced".to_string());
    }
    facts
}

/// "replaced 2 lines with 1 line", "inserted 3 lines", "removed 1 line".
fn line_change(old: u64, new: u64) -> String {
    match (old, new) {
        (0, 0) => "empty edit".to_string(),
        (0, new) => format!("inserted {}", count(new, "line")),
        (old, 0) => format!("removed {}", count(old, "line")),
        (old, new) => format!("replaced {} with {}", count(old, "line"), count(new, "line")),
    }
}

/// `Write`: how long, created or replaced.
fn write_facts(lines: Option<u64>, created: Option<bool>) -> Vec<String> {
    let mut facts: Vec<String> = lines.map(|lines| format!("wrote {}", count(lines, "line"))).into_iter().collect();
    match created {
        Some(true) => facts.push("created a new file".to_string()),
        Some(false) => facts.push("replaced the existing file".to_string()),
        None => {}
    }
    facts
}

/// `NotebookEdit`: "inserted a code cell (2 lines)", "deleted cell c7", "replaced a cell (3 lines)".
fn cell_fact(edit: &CellEdit, cell: Option<&str>, source_lines: Option<u64>) -> String {
    let cell = cell.map_or_else(|| "a cell".to_string(), |id| format!("cell {id}"));
    let action = match edit {
        CellEdit::Insert { cell_type } => format!("inserted a {} cell", cell_type.as_deref().unwrap_or("new")),
        CellEdit::Delete => format!("deleted {cell}"),
        CellEdit::Replace => format!("replaced {cell}"),
    };
    match source_lines {
        Some(lines) if *edit != CellEdit::Delete => format!("{action} ({})", count(lines, "line")),
        _ => action,
    }
}

// --- Shell -----------------------------------------------------------------------------------------------------

/// `Bash`: the command, whether it ran tests, and how it ended.
fn bash(command: Option<&str>, description: Option<&str>, runs_tests: bool, outcome: &Outcome) -> NewObservation {
    let kind = if runs_tests { TEST } else { COMMAND };
    let mut obs = observation(kind, description.or(command).unwrap_or("Ran a shell command"));
    obs.facts.extend(command.map(|command| fact("command", command)));
    let outcome = outcome_facts(outcome);
    obs.subtitle = outcome.join(", ");
    obs.facts.extend(outcome);
    obs
}

/// A command's outcome as facts: the test result; or the exit code and "interrupted"; or its last output line.
fn outcome_facts(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Tests(result) => vec![clip(result, FACT_MAX)],
        Outcome::Ended { exit_code, interrupted } => {
            let code = exit_code.map(|code| format!("exit code {code}"));
            code.into_iter().chain(interrupted.then(|| "interrupted".to_string())).collect()
        }
        Outcome::Output(Some(line)) => vec![fact("output", line)],
        Outcome::Output(None) => vec!["no output".to_string()],
    }
}

// --- Search ----------------------------------------------------------------------------------------------------

/// `Grep`: the pattern, where, and which files matched.
fn grep_observation(search: &Search) -> NewObservation {
    let title = search
        .pattern
        .as_deref()
        .map_or_else(|| "Searched the code".to_string(), |p| format!("Searched for \"{}\"", clip(p, VALUE_MAX)));
    let mut obs = observation(DISCOVERY, &title);
    obs.facts.extend(search.pattern.as_deref().map(|p| fact("pattern", p)));
    obs.facts.extend(scope_fact(search, &mut obs.subtitle));
    obs.facts.extend(search.glob.as_deref().map(|glob| fact("glob", glob)));
    obs.facts.extend(search.file_type.as_deref().map(|file_type| fact("type", file_type)));
    obs.facts.extend(search.files_found.map(|matched| format!("{} matched", count(matched, "file"))));
    obs.facts.extend(search.match_lines.map(|lines| format!("{} of matches", count(lines, "line"))));
    obs
}

/// `Glob`: the pattern and how many files it found.
fn glob_observation(search: &Search) -> NewObservation {
    let title =
        search.pattern.as_deref().map_or_else(|| "Listed files".to_string(), |p| format!("Listed files matching {p}"));
    let mut obs = observation(DISCOVERY, &title);
    obs.facts.extend(search.pattern.as_deref().map(|p| fact("pattern", p)));
    obs.facts.extend(scope_fact(search, &mut obs.subtitle));
    if let Some(found) = search.files_found {
        let truncated = if search.truncated { " (truncated)" } else { "" };
        obs.facts.push(format!("{} found{truncated}", count(found, "file")));
    }
    obs
}

/// The `in: <path>` fact of a search, also written as the subtitle.
fn scope_fact(search: &Search, subtitle: &mut String) -> Option<String> {
    let scope = search.scope.as_deref()?;
    *subtitle = clip(&format!("in {scope}"), FACT_MAX);
    Some(fact("in", scope))
}

// --- Web, plans, MCP, anything else ----------------------------------------------------------------------------

/// `WebFetch`: which site, what was asked of the page, the HTTP status.
fn web_fetch_observation(url: Option<&str>, prompt: Option<&str>, status: &Option<(u64, String)>) -> NewObservation {
    let title = url.map_or_else(|| "Fetched a web page".to_string(), |u| format!("Fetched {}", url_host(u)));
    let mut obs = observation(RESEARCH, &title);
    if let Some(url) = url {
        obs.subtitle = clip(url, FACT_MAX);
        obs.facts.push(fact("url", url));
    }
    obs.facts.extend(prompt.map(|p| fact("prompt", p)));
    if let Some((code, text)) = status {
        obs.facts.push(clip(&format!("HTTP {code} {text}"), FACT_MAX));
    }
    obs
}

/// `WebSearch`: the query, domain limits, how many results.
fn web_search_observation(
    query: Option<&str>,
    allowed_domains: &[String],
    blocked_domains: &[String],
    results: Option<u64>,
) -> NewObservation {
    let title = query.map_or_else(|| "Searched the web".to_string(), |q| format!("Searched the web for \"{q}\""));
    let mut obs = observation(RESEARCH, &title);
    obs.facts.extend(query.map(|q| fact("query", q)));
    for (label, domains) in [("allowed domains", allowed_domains), ("blocked domains", blocked_domains)] {
        if !domains.is_empty() {
            obs.facts.push(fact(label, &domains.join(", ")));
        }
    }
    obs.facts.extend(results.map(|n| count(n, "result")));
    obs
}

/// `TodoWrite`: the plan as it stands: how much is done, what is in progress, what is left.
fn todo_list(todos: &[Todo]) -> NewObservation {
    let done = todos.iter().filter(|t| t.status == "completed").count();
    let mut obs = observation(DECISION, &format!("Updated the todo list ({done} of {} done)", todos.len()));
    if let Some(current) = todos.iter().find(|t| t.status == "in_progress") {
        obs.subtitle = fact("now", &current.content);
    }
    obs.facts = todos.iter().map(|t| fact(&t.status.replace('_', " "), &t.content)).collect();
    cap_list(&mut obs.facts, INPUT_FACTS_MAX);
    obs
}

/// `key: value` for the input's scalar fields (at most a few), or the input's shape.
fn input_facts(input: &Arguments) -> Vec<String> {
    match input {
        Arguments::Fields(fields) => {
            fields.iter().take(INPUT_FACTS_MAX).map(|(key, value)| fact(key, &clip(value, VALUE_MAX))).collect()
        }
        Arguments::Items(n) => vec![format!("input: {}", count(*n, "item"))],
        Arguments::Value(value) => value.iter().map(|v| fact("input", &clip(v, VALUE_MAX))).collect(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Summaries
// ---------------------------------------------------------------------------------------------------------------

/// The summary of the span in `ctx`: told from its tool uses; from its observations' titles and file lists only
/// when the store holds none of its tool uses any more (retention pruned their messages).
fn summarize_span(ctx: &SessionContext, request: &SummaryRequest) -> NewSummary {
    let span = if ctx.tool_uses.is_empty() {
        SpanDigest::of_observations(&ctx.observations)
    } else {
        SpanDigest::of_actions(ctx.tool_uses.iter().map(Action::read))
    };
    let completed = if span.completed.is_empty() {
        first_sentence(&request.last_assistant_message)
            .map(|s| clip(&s, TEXT_MAX))
            .unwrap_or_else(|| "Nothing was changed.".to_string())
    } else {
        span.completed.render()
    };
    NewSummary {
        request: request_text(&ctx.prompts, &request.last_user_message),
        investigated: span.investigated.render(),
        completed,
        next_steps: next_steps(&request.last_assistant_message),
        files_read: span.files_read,
        files_edited: span.files_edited,
        ..NewSummary::default()
    }
}

/// The span's prompts: all of them joined when they fit, else the first and how many followed; else the last
/// user message.
fn request_text(prompts: &[String], last_user_message: &str) -> String {
    let prompts: Vec<String> = prompts.iter().map(|p| one_line(p)).filter(|p| !p.is_empty()).collect();
    let Some((first, follow_ups)) = prompts.split_first() else {
        return clip(last_user_message, TEXT_MAX);
    };
    let joined = prompts.join(" / ");
    if follow_ups.is_empty() || joined.chars().count() <= TEXT_MAX {
        return clip(&joined, TEXT_MAX);
    }
    let suffix = format!(" (+{})", count(follow_ups.len() as u64, "follow-up"));
    format!("{}{suffix}", clip(first, TEXT_MAX - suffix.chars().count()))
}

/// A span gathered for its summary: what was looked at, what was done, and the files on either side.
#[derive(Default)]
struct SpanDigest {
    /// Files read, searches with their match counts, pages fetched, tools asked.
    investigated: Digest,
    /// Files changed, commands run with their latest outcome.
    completed: Digest,
    files_read: Vec<String>,
    files_edited: Vec<String>,
}

impl SpanDigest {
    /// The span told from what its tools did.
    fn of_actions(actions: impl IntoIterator<Item = Action>) -> SpanDigest {
        let mut span = SpanDigest::default();
        for action in actions {
            note_looked_at(&mut span.investigated, &action);
            note_done(&mut span.completed, &action);
            span.files_read.extend(action.files_read());
            span.files_edited.extend(action.files_modified());
        }
        span.files_read = distinct(span.files_read);
        span.files_edited = distinct(span.files_edited);
        span
    }

    /// The span told from observations whose tool uses are gone: each title as it stands, under what was
    /// looked at or what was done by the observation's kind, and the observations' file lists.
    fn of_observations(observations: &[NewObservation]) -> SpanDigest {
        let mut span = SpanDigest::default();
        for obs in observations {
            let digest = match obs.kind.as_str() {
                DISCOVERY | RESEARCH => Some(&mut span.investigated),
                CHANGE | COMMAND | TEST | "bugfix" | "feature" | "refactor" => Some(&mut span.completed),
                _ => None,
            };
            if let Some(digest) = digest.filter(|_| !obs.title.trim().is_empty()) {
                digest.add_text(clip(&obs.title, TITLE_MAX));
            }
            span.files_read.extend(obs.files_read.iter().cloned());
            span.files_edited.extend(obs.files_modified.iter().cloned());
        }
        span.files_read = distinct(span.files_read);
        span.files_edited = distinct(span.files_edited);
        span
    }
}

/// What was looked at: a file read, a search and how many files it found, a page, a question, a tool asked.
/// Changes, commands and the todo list are not.
fn note_looked_at(digest: &mut Digest, action: &Action) {
    let text = match action {
        Action::Read { path: Some(path), .. } => return digest.add_files("read", std::slice::from_ref(path)),
        Action::Read { path: None, .. } => "read a file".to_string(),
        Action::Search(search) => return digest.add_text(search_text(search)),
        Action::Fetch { url: Some(url), .. } => format!("fetched {}", url_host(url)),
        Action::Fetch { url: None, .. } => "fetched a web page".to_string(),
        Action::WebSearch { query: Some(query), .. } => format!("searched the web for \"{query}\""),
        Action::WebSearch { query: None, .. } => "searched the web".to_string(),
        Action::Subagent { description: Some(description), .. } => format!("subagent: {description}"),
        Action::Subagent { description: None, .. } => "ran a subagent".to_string(),
        Action::Mcp { server, tool, .. } => format!("used {tool} ({server})"),
        Action::Other { name, .. } if name.is_empty() => "used an unnamed tool".to_string(),
        Action::Other { name, .. } => format!("used {name}"),
        Action::Change { .. } | Action::Command { .. } | Action::Todos(_) => return,
    };
    digest.add_text(clip(&text, TITLE_MAX));
}

/// What was done: a file changed (under its verb), a command run (a command run again keeps only its latest
/// outcome).
fn note_done(digest: &mut Digest, action: &Action) {
    match action {
        Action::Change { path: Some(path), change } => {
            digest.add_files(change_verb(change), std::slice::from_ref(path))
        }
        Action::Change { path: None, change } => digest.add_text(format!("{} a file", change_verb(change))),
        Action::Command { command: Some(command), outcome, .. } => {
            let command = clip(command, TITLE_MAX);
            let text = format!("ran {command}: {}", outcome_text(outcome));
            digest.replace(command, text);
        }
        Action::Command { command: None, description: Some(description), .. } => {
            digest.add_text(decapitalize(&clip(description, TITLE_MAX)))
        }
        Action::Command { command: None, description: None, .. } => digest.add_text("ran a shell command".to_string()),
        _ => {}
    }
}

/// How the summary says a file was changed.
fn change_verb(change: &Change) -> &'static str {
    match change {
        Change::Edit(_) | Change::Cell { .. } => "edited",
        Change::Write { created: Some(true), .. } => "created",
        Change::Write { .. } => "wrote",
    }
}

/// How the summary says a command ended.
fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Tests(result) => clip(result, FACT_MAX),
        Outcome::Ended { exit_code, interrupted } => {
            let code = exit_code.map(|code| format!("exit code {code}"));
            code.into_iter().chain(interrupted.then(|| "interrupted".to_string())).collect::<Vec<_>>().join(", ")
        }
        Outcome::Output(Some(line)) => clip(&format!("output: {line}"), FACT_MAX),
        Outcome::Output(None) => "no output".to_string(),
    }
}

/// `searched for "refund" (2 files)`, `listed files matching *.rs (3 files)`; no count when the listing was cut
/// short, since the count is then only a lower bound.
fn search_text(search: &Search) -> String {
    let text = match (search.target, search.pattern.as_deref()) {
        (SearchTarget::Contents, Some(pattern)) => format!("searched for \"{}\"", clip(pattern, VALUE_MAX)),
        (SearchTarget::Contents, None) => "searched the code".to_string(),
        (SearchTarget::Names, Some(pattern)) => format!("listed files matching {pattern}"),
        (SearchTarget::Names, None) => "listed files".to_string(),
    };
    let found = search.files_found.filter(|_| !search.truncated);
    let detail = found.map(|n| format!(" ({})", count(n, "file"))).unwrap_or_default();
    format!("{}{detail}", clip(&text, TITLE_MAX))
}

/// A sentence of distinct items joined by "; ", where files under the same verb share one item.
#[derive(Default)]
struct Digest {
    entries: Vec<Entry>,
}

enum Entry {
    Files { verb: String, files: Vec<String> },
    Text { key: String, text: String },
}

impl Digest {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds files to the item for `verb` (`read a, b`), creating it at the end when new.
    fn add_files(&mut self, verb: &str, files: &[String]) {
        let existing = self.entries.iter_mut().find_map(|entry| match entry {
            Entry::Files { verb: v, files } if v == verb => Some(files),
            _ => None,
        });
        match existing {
            Some(list) => *list = distinct(list.iter().chain(files).cloned()),
            None => self.entries.push(Entry::Files { verb: verb.to_string(), files: distinct(files.iter().cloned()) }),
        }
    }

    /// Adds a text item unless the same text is already there.
    fn add_text(&mut self, text: String) {
        if !self.entries.iter().any(|e| matches!(e, Entry::Text { text: t, .. } if *t == text)) {
            self.entries.push(Entry::Text { key: text.clone(), text });
        }
    }

    /// Adds a text item, dropping any earlier one with the same key (a command run again: its last outcome wins).
    fn replace(&mut self, key: String, text: String) {
        self.entries.retain(|e| !matches!(e, Entry::Text { key: k, .. } if *k == key));
        self.entries.push(Entry::Text { key, text });
    }

    fn render(&self) -> String {
        let mut items: Vec<String> = self
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Files { verb, files } => {
                    let mut files = files.clone();
                    cap_list(&mut files, DIGEST_MAX);
                    format!("{verb} {}", files.join(", "))
                }
                Entry::Text { text, .. } => text.clone(),
            })
            .collect();
        cap_list(&mut items, DIGEST_MAX);
        capitalize(&items.join("; "))
    }
}

/// Cues that mark a next step anywhere in a sentence.
#[rustfmt::skip]
const NEXT_STEP_ANYWHERE: &[&str] = &[
    "next step", "still need", "may want to", "might want to", "follow-up", "follow up",
    "left to do", "remaining work", "not yet", "todo:", "to do:",
];

/// Cues that mark a next step when a sentence starts with them.
const NEXT_STEP_START: &[&str] = &["next,", "next:", "todo", "remaining"];

/// What is left, when the last assistant message says so: a "Next steps:" heading with its bullets or following
/// line, or the first sentence with a next-step cue; else empty.
fn next_steps(message: &str) -> String {
    let lines: Vec<&str> = message.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let text = strip_marker(line);
        let Some(sentence) = sentences(text).into_iter().find(|s| has_next_step_cue(s)) else {
            continue;
        };
        if is_heading(line, text)
            && let Some(body) = heading_body(&lines[index + 1..])
        {
            return clip(&format!("{}: {body}", text.trim_end_matches([':', '*']).trim()), TEXT_MAX);
        }
        return clip(sentence, TEXT_MAX);
    }
    String::new()
}

fn has_next_step_cue(sentence: &str) -> bool {
    let lower = sentence.trim().to_lowercase();
    NEXT_STEP_ANYWHERE.iter().any(|cue| lower.contains(cue)) || NEXT_STEP_START.iter().any(|cue| lower.starts_with(cue))
}

/// A line that introduces what follows: ends with a colon, or is a short markdown heading.
fn is_heading(line: &str, text: &str) -> bool {
    text.trim_end_matches('*').ends_with(':')
        || (line.trim_start().starts_with('#') && text.split_whitespace().count() <= 4)
}

/// The bullets under a heading ("a; b"), or the next non-blank line when there are none.
fn heading_body(after: &[&str]) -> Option<String> {
    let mut rest = after.iter().skip_while(|l| l.trim().is_empty()).peekable();
    let first = rest.peek()?;
    if !is_bullet(first) {
        return Some(one_line(strip_marker(first)));
    }
    let bullets: Vec<String> = rest.take_while(|l| is_bullet(l)).map(|l| one_line(strip_marker(l))).collect();
    Some(bullets.join("; "))
}

fn is_bullet(line: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with(['-', '*', '•']) {
        return true;
    }
    let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    digits.len() < line.len() && digits.starts_with(['.', ')'])
}

/// A line without its markdown: heading hashes, bullet or number, quote, bold markers.
fn strip_marker(line: &str) -> &str {
    let line = line.trim().trim_start_matches(['#', '>', '-', '*', '•']).trim_start();
    let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    let line = match digits.strip_prefix(['.', ')']) {
        Some(rest) if digits.len() < line.len() => rest,
        _ => line,
    };
    line.trim().trim_start_matches(['*', '_']).trim()
}

/// The first sentence of the first line of prose (headings skipped).
fn first_sentence(text: &str) -> Option<String> {
    let line = text.lines().filter(|l| !l.trim_start().starts_with('#')).map(strip_marker).find(|l| !l.is_empty())?;
    sentences(line).first().map(|s| s.to_string())
}

/// A line cut after each `.`, `!` or `?` that is followed by whitespace.
fn sentences(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at_boundary = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if matches!(c, '.' | '!' | '?') && at_boundary {
            let end = i + c.len_utf8();
            out.push(line[start..end].trim());
            start = end;
        }
    }
    out.push(line[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Text and JSON helpers
// ---------------------------------------------------------------------------------------------------------------

/// A string field that is not blank.
fn text_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// A non-negative integer field (a number, or a string holding one).
fn uint_at(value: &Value, key: &str) -> Option<u64> {
    let field = value.get(key)?;
    field.as_u64().or_else(|| field.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The non-blank strings of an array field.
fn string_list<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    let items = value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items.iter().filter_map(Value::as_str).filter(|s| !s.trim().is_empty()).collect()
}

/// `path` without the `cwd/` prefix when it is under `cwd`; as given otherwise.
fn relative_to(path: &str, cwd: &str) -> String {
    let path = path.trim();
    let cwd = cwd.trim().trim_end_matches('/');
    match path.strip_prefix(cwd).and_then(|rest| rest.strip_prefix('/')) {
        Some(rest) if !cwd.is_empty() && !rest.is_empty() => rest.to_string(),
        _ => path.to_string(),
    }
}

/// The last component of a path.
fn file_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches(['/', '\\']);
    trimmed.rsplit(['/', '\\']).next().filter(|name| !name.is_empty()).unwrap_or(path)
}

/// The host of a URL (`https://docs.rs/serde` → `docs.rs`), or the URL itself when it has none.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() { url } else { host }
}

/// Lines in a text; a final line without a newline counts.
fn line_count(text: &str) -> u64 {
    text.lines().count() as u64
}

/// "1 line", "2 lines".
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// All whitespace runs collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` on one line, at most `max` characters, ending with `…` when cut. Cuts on char boundaries.
fn clip(text: &str, max: usize) -> String {
    let line = one_line(text);
    if line.chars().count() <= max {
        return line;
    }
    let kept: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// Keeps the first `max` items and says how many were left out.
fn cap_list(items: &mut Vec<String>, max: usize) {
    if items.len() > max {
        let more = items.len() - max;
        items.truncate(max);
        items.push(format!("+{more} more"));
    }
}

/// The items without blanks and repeats, first-seen order kept.
fn distinct(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !item.trim().is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// Lower-cases the first letter unless the word is an acronym or a name with more capitals ("URL", "WebFetch").
fn decapitalize(text: &str) -> String {
    let first_word = text.split_whitespace().next().unwrap_or("");
    if first_word.chars().skip(1).any(char::is_uppercase) {
        return text.to_string();
    }
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
}

/// `text` without ANSI escape sequences (colours, cursor moves).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const CWD: &str = "/home/dev/projects/ledger";
    const PROMPT: &str = "The balance report double-counts refunds. Find the cause and fix it, then run the tests.";
    const FINAL_MESSAGE: &str = "Fixed: `balance` in src/report.rs added refund amounts twice. I removed the extra \
                                 branch; all 14 tests pass.";

    fn tool(name: &str, input: Value, response: Value) -> ToolUse {
        ToolUse {
            tool_name: name.to_string(),
            tool_input: input,
            tool_response: response,
            cwd: CWD.to_string(),
            tool_use_id: None,
            error: None,
            subagent: None,
        }
    }

    async fn observe(tool: &ToolUse) -> NewObservation {
        let mut observations =
            LocalProvider.observe(&SessionContext::default(), std::slice::from_ref(tool)).await.unwrap();
        assert_eq!(observations.usage.total(), 0);
        let mut observations = observations.memory.remove(0);
        assert_eq!(observations.len(), 1, "exactly one observation for {}", tool.tool_name);
        observations.remove(0)
    }

    async fn summarize(ctx: &SessionContext, last_assistant_message: &str) -> NewSummary {
        let request = SummaryRequest {
            last_user_message: String::new(),
            last_assistant_message: last_assistant_message.to_string(),
        };
        LocalProvider.summarize(ctx, &request).await.unwrap().memory.unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    // The sample session (fixtures/claude-code/session-basic, 03..06-PostToolUse.json).

    fn sample_grep() -> ToolUse {
        tool(
            "Grep",
            json!({"pattern": "refund", "path": "src", "output_mode": "files_with_matches"}),
            json!({"mode": "files_with_matches", "filenames": ["src/report.rs", "src/txn.rs"], "numFiles": 2}),
        )
    }

    fn sample_read() -> ToolUse {
        tool(
            "Read",
            json!({"file_path": "/home/dev/projects/ledger/src/report.rs"}),
            json!({"type": "text", "file": {
                "filePath": "/home/dev/projects/ledger/src/report.rs",
                "content": "pub fn balance(txns: &[Txn]) -> i64 {\n    let mut total = 0;\n    for t in txns {\n        \
                            total += t.amount;\n        if t.kind == Kind::Refund { total += t.amount; }\n    }\n    \
                            total\n}\n",
                "numLines": 8, "startLine": 1, "totalLines": 8
            }}),
        )
    }

    fn sample_edit() -> ToolUse {
        let old = "        total += t.amount;\n        if t.kind == Kind::Refund { total += t.amount; }";
        let new = "        total += t.amount;";
        tool(
            "Edit",
            json!({"file_path": "/home/dev/projects/ledger/src/report.rs", "old_string": old, "new_string": new,
                   "replace_all": false}),
            json!({"filePath": "/home/dev/projects/ledger/src/report.rs", "oldString": old, "newString": new,
                   "originalFile": null, "structuredPatch": [{"oldStart": 3, "oldLines": 4, "newStart": 3,
                   "newLines": 3, "lines": ["     for t in txns {", "         total += t.amount;",
                   "-        if t.kind == Kind::Refund { total += t.amount; }", "     }"]}],
                   "userModified": false, "replaceAll": false}),
        )
    }

    fn sample_bash() -> ToolUse {
        tool(
            "Bash",
            json!({"command": "cargo test -q", "description": "Run the test suite"}),
            json!({"stdout": "running 14 tests\n..............\ntest result: ok. 14 passed; 0 failed; 0 ignored\n",
                   "stderr": "", "interrupted": false, "isImage": false}),
        )
    }

    fn sample_tools() -> Vec<ToolUse> {
        vec![sample_grep(), sample_read(), sample_edit(), sample_bash()]
    }

    async fn sample_observations() -> Vec<NewObservation> {
        let mut out = Vec::new();
        for t in sample_tools() {
            out.push(observe(&t).await);
        }
        out
    }

    /// A summary's context for a span of these tool uses, with the observations made of them.
    fn sample_context(tool_uses: Vec<ToolUse>) -> SessionContext {
        SessionContext {
            session_id: 1,
            agent_session_id: "5b1f0c9e-2d47-4a8e-9c3b-7f61a2d4e810".to_string(),
            project: "ledger".to_string(),
            prompt_number: 1,
            prompts: vec![PROMPT.to_string()],
            observations: tool_uses.iter().map(observe_tool).collect(),
            tool_uses,
        }
    }

    // --- Files ---

    #[tokio::test]
    async fn read_sample_names_the_file_and_its_lines() {
        let obs = observe(&sample_read()).await;
        assert_eq!(obs.kind, "discovery");
        assert_eq!(obs.title, "Read report.rs");
        assert_eq!(obs.subtitle, "src/report.rs");
        assert_eq!(obs.facts, strings(&["read 8 lines"]));
        assert_eq!(obs.files_read, strings(&["src/report.rs"]));
        assert!(obs.files_modified.is_empty());
    }

    #[tokio::test]
    async fn read_of_part_of_a_file_outside_cwd_keeps_the_path() {
        let obs = observe(&tool(
            "Read",
            json!({"file_path": "/etc/nginx/nginx.conf", "offset": 100, "limit": 50}),
            json!({"type": "text", "file": {"filePath": "/etc/nginx/nginx.conf", "numLines": 50, "startLine": 100,
                   "totalLines": 400}}),
        ))
        .await;
        assert_eq!(obs.title, "Read nginx.conf");
        assert_eq!(obs.files_read, strings(&["/etc/nginx/nginx.conf"]));
        assert_eq!(obs.facts, strings(&["read lines 100-149 of 400"]));
    }

    #[tokio::test]
    async fn read_without_a_response_tells_the_requested_range() {
        let obs =
            observe(&tool("Read", json!({"file_path": "src/lib.rs", "offset": 10, "limit": 1}), json!(null))).await;
        assert_eq!(obs.files_read, strings(&["src/lib.rs"]));
        assert_eq!(obs.facts, strings(&["requested 1 line from line 10"]));
    }

    #[tokio::test]
    async fn paths_are_relative_only_under_cwd() {
        assert_eq!(relative_to("/home/dev/projects/ledger/src/a.rs", "/home/dev/projects/ledger/"), "src/a.rs");
        assert_eq!(relative_to("/home/dev/projects/ledger2/a.rs", CWD), "/home/dev/projects/ledger2/a.rs");
        assert_eq!(relative_to("/home/dev/projects/ledger", CWD), "/home/dev/projects/ledger");
        assert_eq!(relative_to("/src/a.rs", ""), "/src/a.rs");
    }

    #[tokio::test]
    async fn edit_sample_counts_replaced_lines() {
        let obs = observe(&sample_edit()).await;
        assert_eq!(obs.kind, "change");
        assert_eq!(obs.title, "Edited report.rs");
        assert_eq!(obs.subtitle, "src/report.rs");
        assert_eq!(obs.facts, strings(&["replaced 2 lines with 1 line"]));
        assert_eq!(obs.files_modified, strings(&["src/report.rs"]));
        assert!(obs.files_read.is_empty());
    }

    #[tokio::test]
    async fn edit_with_replace_all_and_pure_insertion() {
        let obs = observe(&tool(
            "Edit",
            json!({"file_path": "/home/dev/projects/ledger/src/txn.rs", "old_string": "", "new_string": "a\nb\nc",
                   "replace_all": true}),
            json!({}),
        ))
        .await;
        assert_eq!(obs.facts, strings(&["inserted 3 lines", "replace_all: every occurrence replaced"]));
    }

    #[tokio::test]
    async fn multi_edit_adds_up_its_edits() {
        let obs = observe(&tool(
            "MultiEdit",
            json!({"file_path": "/home/dev/projects/ledger/src/report.rs", "edits": [
                {"old_string": "fn a() {}", "new_string": "fn a() {\n    b();\n}"},
                {"old_string": "x\ny", "new_string": "z"},
                {"old_string": "let n = 1;", "new_string": "let n = 2;", "replace_all": true},
            ]}),
            json!({"filePath": "/home/dev/projects/ledger/src/report.rs"}),
        ))
        .await;
        assert_eq!(obs.kind, "change");
        assert_eq!(obs.title, "Edited report.rs");
        assert_eq!(
            obs.facts,
            strings(&["3 edits: replaced 4 lines with 5 lines", "replace_all: every occurrence replaced"])
        );
        assert_eq!(obs.files_modified, strings(&["src/report.rs"]));
    }

    #[tokio::test]
    async fn write_counts_lines_and_says_created() {
        let obs = observe(&tool(
            "Write",
            json!({"file_path": "/home/dev/projects/ledger/src/refund.rs", "content": "pub struct Refund;\n\nimpl Refund {}\n"}),
            json!({"type": "create", "filePath": "/home/dev/projects/ledger/src/refund.rs"}),
        ))
        .await;
        assert_eq!(obs.kind, "change");
        assert_eq!(obs.title, "Wrote refund.rs");
        assert_eq!(obs.facts, strings(&["wrote 3 lines", "created a new file"]));
        assert_eq!(obs.files_modified, strings(&["src/refund.rs"]));
    }

    #[tokio::test]
    async fn notebook_edit_names_the_cell() {
        let obs = observe(&tool(
            "NotebookEdit",
            json!({"notebook_path": "/home/dev/projects/ledger/analysis.ipynb", "cell_id": "c7", "new_source": "df.head()\ndf.describe()",
                   "cell_type": "code", "edit_mode": "insert"}),
            json!({}),
        ))
        .await;
        assert_eq!(obs.kind, "change");
        assert_eq!(obs.title, "Edited analysis.ipynb");
        assert_eq!(obs.facts, strings(&["inserted a code cell (2 lines)"]));
        assert_eq!(obs.files_modified, strings(&["analysis.ipynb"]));
    }

    // --- Shell ---

    #[tokio::test]
    async fn bash_sample_is_a_test_run_with_its_result() {
        let obs = observe(&sample_bash()).await;
        assert_eq!(obs.kind, "test");
        assert_eq!(obs.title, "Run the test suite");
        assert_eq!(obs.subtitle, "test result: ok. 14 passed; 0 failed");
        assert_eq!(obs.facts, strings(&["command: cargo test -q", "test result: ok. 14 passed; 0 failed"]));
    }

    #[tokio::test]
    async fn bash_reports_exit_code_and_interruption() {
        let obs = observe(&tool(
            "Bash",
            json!({"command": "git push origin main"}),
            json!({"stdout": "", "stderr": "error: failed to push some refs", "exit_code": 1, "interrupted": true}),
        ))
        .await;
        assert_eq!(obs.kind, "command");
        assert_eq!(obs.title, "git push origin main");
        assert_eq!(obs.facts, strings(&["command: git push origin main", "exit code 1", "interrupted"]));
    }

    #[tokio::test]
    async fn bash_without_code_takes_the_last_output_line() {
        let obs = observe(&tool(
            "Bash",
            json!({"command": "git status --short"}),
            json!({"stdout": " M src/report.rs\n?? src/refund.rs\n\n", "stderr": "", "interrupted": false}),
        ))
        .await;
        assert_eq!(obs.facts, strings(&["command: git status --short", "output: ?? src/refund.rs"]));

        let obs = observe(&tool(
            "Bash",
            json!({"command": "cargo build"}),
            json!({"stdout": "", "stderr": "   Compiling ledger v0.1.0\n\u{1b}[1m\u{1b}[31merror\u{1b}[0m: expected `;`\n"}),
        ))
        .await;
        assert_eq!(obs.facts, strings(&["command: cargo build", "output: error: expected `;`"]));

        let obs = observe(&tool("Bash", json!({"command": "true"}), json!({"stdout": "", "stderr": ""}))).await;
        assert_eq!(obs.facts, strings(&["command: true", "no output"]));
    }

    #[tokio::test]
    async fn bash_title_truncates_long_commands() {
        let command = format!("echo {}", "x".repeat(200));
        let obs = observe(&tool("Bash", json!({"command": command}), json!({"stdout": "xx"}))).await;
        assert_eq!(obs.title.chars().count(), TITLE_MAX);
        assert!(obs.title.starts_with("echo xxx"));
        assert!(obs.title.ends_with('…'));
        assert_eq!(obs.facts[0].chars().count(), FACT_MAX);
    }

    #[tokio::test]
    async fn bash_reads_other_test_runners_results() {
        let pytest = observe(&tool(
            "Bash",
            json!({"command": "python -m pytest tests/ -q"}),
            json!({"stdout": "..F.\n=========== 3 passed, 1 failed in 0.52s ===========\n", "stderr": ""}),
        ))
        .await;
        assert_eq!(pytest.kind, "test");
        assert_eq!(pytest.facts[1], "3 passed, 1 failed in 0.52s");

        let jest = observe(&tool(
            "Bash",
            json!({"command": "npx jest src"}),
            json!({"stdout": "", "stderr": "Test Suites: 2 passed, 2 total\nTests:       1 failed, 13 passed, 14 total\nTime: 1.2 s\n"}),
        ))
        .await;
        assert_eq!(jest.kind, "test");
        assert_eq!(jest.facts[1], "Tests: 1 failed, 13 passed, 14 total");

        let cargo = observe(&tool(
            "Bash",
            json!({"command": "cd ledger && cargo test 2>&1 | tail -20"}),
            json!({"stdout": "test result: ok. 10 passed; 0 failed; 0 ignored\n\
                              test result: FAILED. 3 passed; 2 failed; 0 ignored\n"}),
        ))
        .await;
        assert_eq!(cargo.kind, "test");
        assert_eq!(cargo.facts[1], "test result: FAILED. 13 passed; 2 failed (2 suites)");

        let go = observe(&tool(
            "Bash",
            json!({"command": "go test ./..."}),
            json!({"stdout": "ok  \tledger/report\t0.012s\nFAIL\tledger/txn\t0.020s\nFAIL\n"}),
        ))
        .await;
        assert_eq!(go.kind, "test");
        assert_eq!(go.facts[1], "1 package ok; 1 failed");
    }

    #[tokio::test]
    async fn a_failed_tool_use_says_it_failed_and_why() {
        let mut bash = tool("Bash", json!({"command": "exit 3", "description": "Fail on purpose"}), Value::Null);
        bash.error = Some("Exit code 3".into());
        let obs = observe(&bash).await;
        assert_eq!(obs.kind, "failure");
        assert!(obs.title.starts_with("Failed: "), "{}", obs.title);
        assert_eq!(obs.facts[0], "error: Exit code 3");

        let mut edit = sample_edit();
        edit.tool_response = Value::Null;
        edit.error = Some("  ".into());
        let obs = observe(&edit).await;
        assert_eq!(obs.kind, "failure");
        assert_eq!(obs.facts[0], "error: no message");
        assert!(obs.files_modified.is_empty(), "a failed edit changed nothing");
    }

    #[test]
    fn test_commands_are_recognized() {
        for command in [
            "cargo test",
            "cargo test -q --workspace",
            "RUST_BACKTRACE=1 cargo nextest run",
            "npm test",
            "npm run test:unit",
            "pnpm vitest run",
            "yarn jest --watch=false",
            "pytest -x tests/test_report.py",
            "uv run pytest",
            "go test ./...",
            "make test",
            "timeout 300 cargo test",
            "cd api && npm test",
            "./gradlew test",
            "bundle exec rspec",
        ] {
            assert!(looks_like_tests(command), "{command} runs tests");
        }
        for command in [
            "cargo build",
            "cargo run -- test",
            "npm run build",
            "git commit -m 'fix tests'",
            "grep -r pytest .",
            "cat jest.config.js",
            "ls tests",
            "",
        ] {
            assert!(!looks_like_tests(command), "{command} does not run tests");
        }
    }

    // --- Search ---

    #[tokio::test]
    async fn grep_sample_lists_pattern_scope_and_matches() {
        let obs = observe(&sample_grep()).await;
        assert_eq!(obs.kind, "discovery");
        assert_eq!(obs.title, "Searched for \"refund\"");
        assert_eq!(obs.subtitle, "in src");
        assert_eq!(obs.facts, strings(&["pattern: refund", "in: src", "2 files matched"]));
        assert_eq!(obs.files_read, strings(&["src/report.rs", "src/txn.rs"]));
    }

    #[tokio::test]
    async fn grep_caps_and_relativizes_matched_files() {
        let filenames: Vec<String> = (0..30).map(|i| format!("{CWD}/src/m{i}.rs")).collect();
        let obs = observe(&tool(
            "Grep",
            json!({"pattern": "fn \\w+_refund", "glob": "*.rs"}),
            json!({"filenames": filenames, "numFiles": 30}),
        ))
        .await;
        assert_eq!(obs.facts, strings(&["pattern: fn \\w+_refund", "glob: *.rs", "30 files matched"]));
        assert_eq!(obs.files_read.len(), FILES_MAX);
        assert_eq!(obs.files_read[0], "src/m0.rs");
    }

    #[tokio::test]
    async fn glob_counts_files_found() {
        let obs = observe(&tool(
            "Glob",
            json!({"pattern": "**/*.rs", "path": "/home/dev/projects/ledger/src"}),
            json!({"filenames": ["/home/dev/projects/ledger/src/report.rs", "/home/dev/projects/ledger/src/txn.rs"],
                   "numFiles": 2, "truncated": false}),
        ))
        .await;
        assert_eq!(obs.kind, "discovery");
        assert_eq!(obs.title, "Listed files matching **/*.rs");
        assert_eq!(obs.facts, strings(&["pattern: **/*.rs", "in: src", "2 files found"]));
    }

    // --- Web, subagents, plans ---

    #[tokio::test]
    async fn web_fetch_and_search_are_research() {
        let fetch = observe(&tool(
            "WebFetch",
            json!({"url": "https://docs.rs/rust_decimal/latest/rust_decimal/", "prompt": "How are refunds rounded?"}),
            json!({"code": 200, "codeText": "OK", "bytes": 51234, "result": "Rounding uses banker's rounding."}),
        ))
        .await;
        assert_eq!(fetch.kind, "research");
        assert_eq!(fetch.title, "Fetched docs.rs");
        assert_eq!(
            fetch.facts,
            strings(&[
                "url: https://docs.rs/rust_decimal/latest/rust_decimal/",
                "prompt: How are refunds rounded?",
                "HTTP 200 OK"
            ])
        );

        let search = observe(&tool(
            "WebSearch",
            json!({"query": "rust decimal banker's rounding", "allowed_domains": ["docs.rs"]}),
            json!({"results": [{"title": "rust_decimal", "url": "https://docs.rs/rust_decimal"}]}),
        ))
        .await;
        assert_eq!(search.kind, "research");
        assert_eq!(search.title, "Searched the web for \"rust decimal banker's rounding\"");
        assert_eq!(
            search.facts,
            strings(&["query: rust decimal banker's rounding", "allowed domains: docs.rs", "1 result"])
        );
    }

    #[tokio::test]
    async fn subagent_title_comes_from_the_description() {
        for name in ["Task", "Agent"] {
            let obs = observe(&tool(
                name,
                json!({"description": "Find refund handling", "prompt": "Look for every place refunds are summed.",
                       "subagent_type": "Explore"}),
                json!({"content": [{"type": "text", "text": "Refunds are summed in src/report.rs. Nowhere else."}],
                       "totalToolUseCount": 4}),
            ))
            .await;
            assert_eq!(obs.kind, "research");
            assert_eq!(obs.title, "Subagent: Find refund handling");
            assert_eq!(
                obs.facts,
                strings(&[
                    "agent: Explore",
                    "prompt: Look for every place refunds are summed.",
                    "result: Refunds are summed in src/report.rs.",
                    "4 tool uses"
                ])
            );
        }
    }

    #[tokio::test]
    async fn todo_write_tells_progress() {
        let obs = observe(&tool(
            "TodoWrite",
            json!({"todos": [
                {"content": "Find the double count", "status": "completed", "activeForm": "Finding"},
                {"content": "Fix balance()", "status": "in_progress", "activeForm": "Fixing"},
                {"content": "Run the tests", "status": "pending", "activeForm": "Running"},
            ]}),
            json!({}),
        ))
        .await;
        assert_eq!(obs.kind, "decision");
        assert_eq!(obs.title, "Updated the todo list (1 of 3 done)");
        assert_eq!(obs.subtitle, "now: Fix balance()");
        assert_eq!(
            obs.facts,
            strings(&["completed: Find the double count", "in progress: Fix balance()", "pending: Run the tests"])
        );
    }

    #[tokio::test]
    async fn mcp_tools_name_tool_and_server() {
        let obs = observe(&tool(
            "mcp__github__create_issue",
            json!({"title": "Refunds double-counted", "repo": "dev/ledger", "labels": ["bug"], "draft": false,
                   "body": "x".repeat(100)}),
            json!({"number": 42}),
        ))
        .await;
        assert_eq!(obs.kind, "discovery");
        assert_eq!(obs.title, "Used create_issue (github)");
        assert_eq!(obs.facts.len(), 4, "the array is left out: {:?}", obs.facts);
        assert!(obs.facts.contains(&"title: Refunds double-counted".to_string()));
        assert!(obs.facts.contains(&"repo: dev/ledger".to_string()));
        assert!(obs.facts.contains(&"draft: false".to_string()));
        let body = obs.facts.iter().find(|f| f.starts_with("body: ")).unwrap();
        assert_eq!(body.chars().count(), "body: ".len() + VALUE_MAX);
    }

    #[tokio::test]
    async fn unknown_tools_show_their_scalar_input() {
        let obs =
            observe(&tool("Frobnicate", json!({"level": 3, "target": "ledger", "nested": {"a": 1}}), json!(null)))
                .await;
        assert_eq!(obs.kind, "discovery");
        assert_eq!(obs.title, "Used Frobnicate");
        assert_eq!(obs.facts, strings(&["level: 3", "target: ledger"]));

        let obs = observe(&tool("", json!("just text"), json!(null))).await;
        assert_eq!(obs.title, "Used an unnamed tool");
        assert_eq!(obs.facts, strings(&["input: just text"]));
    }

    #[tokio::test]
    async fn every_tool_gives_one_observation_for_garbage() {
        let names = [
            "Read",
            "Edit",
            "MultiEdit",
            "Write",
            "NotebookEdit",
            "Bash",
            "Grep",
            "Glob",
            "WebFetch",
            "WebSearch",
            "Task",
            "Agent",
            "TodoWrite",
            "mcp__server__tool",
            "mcp__",
            "mcp__broken",
            "Unknown",
            "",
        ];
        let garbage = [json!(null), json!("a string"), json!([1, "two", null]), json!({}), json!(17), json!(true)];
        for name in names {
            for input in &garbage {
                for response in &garbage {
                    let obs = observe(&tool(name, input.clone(), response.clone())).await;
                    assert!(!obs.kind.is_empty(), "{name}: {obs:?}");
                    assert!(!obs.title.trim().is_empty(), "{name}: {obs:?}");
                }
            }
        }
        let obs = observe(&tool("Edit", json!({"edits": "not a list", "file_path": 5}), json!({"filePath": []}))).await;
        assert_eq!(obs.title, "Edited a file");
        assert!(obs.files_modified.is_empty());
    }

    #[tokio::test]
    async fn file_lists_are_deduplicated_in_order() {
        let obs = observe(&tool(
            "Grep",
            json!({"pattern": "x"}),
            json!({"filenames": ["b.rs", "/home/dev/projects/ledger/a.rs", "b.rs", "a.rs", ""]}),
        ))
        .await;
        assert_eq!(obs.files_read, strings(&["b.rs", "a.rs"]));
        assert_eq!(obs.facts, strings(&["pattern: x", "5 files matched"]));
    }

    #[tokio::test]
    async fn same_input_gives_same_output() {
        let first = sample_observations().await;
        let second = sample_observations().await;
        assert_eq!(first, second);
        let ctx = sample_context(sample_tools());
        assert_eq!(summarize(&ctx, FINAL_MESSAGE).await, summarize(&ctx, FINAL_MESSAGE).await);
    }

    // --- Summaries ---

    #[tokio::test]
    async fn sample_session_summarized_end_to_end() {
        let ctx = sample_context(sample_tools());
        let summary = summarize(&ctx, FINAL_MESSAGE).await;
        assert_eq!(summary.request, PROMPT);
        assert_eq!(summary.investigated, "Searched for \"refund\" (2 files); read src/report.rs");
        assert_eq!(summary.completed, "Edited src/report.rs; ran cargo test -q: test result: ok. 14 passed; 0 failed");
        assert_eq!(summary.next_steps, "");
        assert_eq!(summary.files_read, strings(&["src/report.rs", "src/txn.rs"]));
        assert_eq!(summary.files_edited, strings(&["src/report.rs"]));
    }

    #[tokio::test]
    async fn next_steps_come_from_the_last_message() {
        let message = format!("{FINAL_MESSAGE} Next steps: add a regression test for refunds.");
        let ctx = sample_context(Vec::new());
        assert_eq!(summarize(&ctx, &message).await.next_steps, "Next steps: add a regression test for refunds.");

        let heading =
            "Fixed the double count.\n\n## Next steps\n\n- Add a regression test\n- Update the changelog\n\nDone.";
        assert_eq!(next_steps(heading), "Next steps: Add a regression test; Update the changelog");
        assert_eq!(next_steps("All good.\n**Remaining:**\n1. Migrate old rows"), "Remaining: Migrate old rows");
        assert_eq!(next_steps("Done. You may want to rerun the import. Thanks!"), "You may want to rerun the import.");
        assert_eq!(next_steps("TODO: wire up the CLI flag"), "TODO: wire up the CLI flag");
        assert_eq!(next_steps("Fixed it. Remaining: the CSV export."), "Remaining: the CSV export.");
        assert_eq!(next_steps("Then, I ran the tests. To do this, I used cargo."), "");
        assert_eq!(next_steps("The remaining tests pass. I removed the TODO comment."), "");
        assert_eq!(next_steps(""), "");
    }

    #[tokio::test]
    async fn request_joins_prompts_or_falls_back() {
        let mut ctx = sample_context(Vec::new());
        ctx.prompts = strings(&["Fix the refunds", "  also the\ntotals ", ""]);
        assert_eq!(summarize(&ctx, "").await.request, "Fix the refunds / also the totals");

        ctx.prompts = vec!["a".repeat(400), "b".repeat(200), "c".repeat(10)];
        let request = summarize(&ctx, "").await.request;
        assert!(request.ends_with("… (+2 follow-ups)"), "{request}");
        assert_eq!(request.chars().count(), TEXT_MAX);

        ctx.prompts.clear();
        let request =
            SummaryRequest { last_user_message: "Please fix it".into(), last_assistant_message: String::new() };
        assert_eq!(LocalProvider.summarize(&ctx, &request).await.unwrap().memory.unwrap().request, "Please fix it");
    }

    #[tokio::test]
    async fn completed_falls_back_to_the_message_then_nothing() {
        let grep_only = sample_context(vec![sample_grep()]);
        let summary = summarize(&grep_only, FINAL_MESSAGE).await;
        assert_eq!(summary.completed, "Fixed: `balance` in src/report.rs added refund amounts twice.");
        assert_eq!(summary.files_edited, Vec::<String>::new());

        let summary = summarize(&sample_context(Vec::new()), "").await;
        assert_eq!(summary.completed, "Nothing was changed.");
        assert_eq!(summary.investigated, "");
        assert_eq!(
            summary,
            NewSummary { request: PROMPT.to_string(), completed: "Nothing was changed.".into(), ..Default::default() }
        );
    }

    #[tokio::test]
    async fn summary_lists_are_capped_and_commands_keep_their_last_outcome() {
        let mut tools = Vec::new();
        for i in 0..9 {
            tools.push(tool("Read", json!({"file_path": format!("{CWD}/src/f{i}.rs")}), json!({})));
        }
        let failing = json!({"stdout": "test result: FAILED. 13 passed; 1 failed; 0 ignored"});
        tools.push(tool("Bash", json!({"command": "cargo test"}), failing));
        tools.push(sample_edit());
        let passing = json!({"stdout": "test result: ok. 14 passed; 0 failed; 0 ignored"});
        tools.push(tool("Bash", json!({"command": "cargo test"}), passing));
        let summary = summarize(&sample_context(tools), "").await;
        assert_eq!(
            summary.investigated,
            "Read src/f0.rs, src/f1.rs, src/f2.rs, src/f3.rs, src/f4.rs, src/f5.rs, +3 more"
        );
        assert_eq!(summary.completed, "Edited src/report.rs; ran cargo test: test result: ok. 14 passed; 0 failed");
        assert_eq!(summary.files_read.len(), 9);
    }

    /// The observation rendered with other words: every title, subtitle and fact changed.
    fn reworded(obs: &NewObservation) -> NewObservation {
        NewObservation {
            title: format!("Tool said: {}", obs.title.to_uppercase()),
            subtitle: String::new(),
            facts: obs.facts.iter().map(|f| format!("- {} (2 files found)", f.replace(": ", " = "))).collect(),
            ..obs.clone()
        }
    }

    #[tokio::test]
    async fn rewording_observations_does_not_change_a_summary() {
        let ctx = sample_context(sample_tools());
        let before = summarize(&ctx, FINAL_MESSAGE).await;

        let mut reworded_ctx = ctx.clone();
        reworded_ctx.observations = ctx.observations.iter().map(reworded).collect();
        assert_ne!(reworded_ctx.observations, ctx.observations);
        assert_eq!(summarize(&reworded_ctx, FINAL_MESSAGE).await, before);
        assert_eq!(before.investigated, "Searched for \"refund\" (2 files); read src/report.rs");
        assert_eq!(before.completed, "Edited src/report.rs; ran cargo test -q: test result: ok. 14 passed; 0 failed");

        // The summary is told from the tool uses alone: without the observations it is the same.
        reworded_ctx.observations.clear();
        assert_eq!(summarize(&reworded_ctx, FINAL_MESSAGE).await, before);
    }

    #[tokio::test]
    async fn a_summary_takes_counts_and_verbs_from_the_tool_uses_not_from_facts() {
        let tools = vec![
            // Its input becomes the fact "3: items found", which the summary once took for a match count.
            tool("mcp__tracker__list", json!({"3": "items found"}), json!({})),
            tool(
                "Glob",
                json!({"pattern": "**/*.rs"}),
                json!({"filenames": ["a.rs", "b.rs"], "numFiles": 100, "truncated": true}),
            ),
            tool(
                "Write",
                json!({"file_path": format!("{CWD}/src/refund.rs"), "content": "x\n"}),
                json!({"type": "create"}),
            ),
            tool(
                "Write",
                json!({"file_path": format!("{CWD}/README.md"), "content": "x\n"}),
                json!({"type": "update"}),
            ),
            tool("Bash", json!({"command": "git push"}), json!({"stderr": "rejected", "exit_code": 1})),
        ];
        let ctx = sample_context(tools);
        assert!(ctx.observations[0].facts.contains(&"3: items found".to_string()));
        let summary = summarize(&ctx, "").await;
        assert_eq!(summary.investigated, "Used list (tracker); listed files matching **/*.rs");
        assert_eq!(summary.completed, "Created src/refund.rs; wrote README.md; ran git push: exit code 1");
        assert_eq!(summary.files_edited, strings(&["src/refund.rs", "README.md"]));
    }

    #[tokio::test]
    async fn pruned_tool_uses_fall_back_to_observation_titles_and_files() {
        let mut tools = sample_tools();
        tools.push(tool("TodoWrite", json!({"todos": [{"content": "Fix it", "status": "completed"}]}), json!({})));
        let mut ctx = sample_context(tools);
        ctx.tool_uses.clear();
        let summary = summarize(&ctx, FINAL_MESSAGE).await;
        assert_eq!(summary.request, PROMPT);
        assert_eq!(summary.investigated, "Searched for \"refund\"; Read report.rs");
        assert_eq!(summary.completed, "Edited report.rs; Run the test suite");
        assert_eq!(summary.files_read, strings(&["src/report.rs", "src/txn.rs"]));
        assert_eq!(summary.files_edited, strings(&["src/report.rs"]));

        // Only titles and file lists are read: other facts and subtitles change nothing.
        for obs in &mut ctx.observations {
            obs.subtitle = "reworded".into();
            obs.facts = vec!["command: rm -rf /".into(), "9 files matched".into()];
        }
        assert_eq!(summarize(&ctx, FINAL_MESSAGE).await, summary);

        // Neither tool uses nor observations: the summary rests on the messages.
        ctx.observations.clear();
        let summary = summarize(&ctx, FINAL_MESSAGE).await;
        assert_eq!(summary.completed, "Fixed: `balance` in src/report.rs added refund amounts twice.");
        assert_eq!(summary.investigated, "");
    }

    #[tokio::test]
    async fn multibyte_text_is_cut_on_char_boundaries() {
        let long = "é🦀日本".repeat(100);
        let clipped = clip(&long, 10);
        assert_eq!(clipped.chars().count(), 10);
        assert!(clipped.ends_with('…'));

        let bash =
            tool("Bash", json!({"command": long, "description": "ünïcödé ".repeat(30)}), json!({"stdout": long}));
        let obs = observe(&bash).await;
        assert_eq!(obs.title.chars().count(), TITLE_MAX);
        assert!(obs.title.starts_with("ünïcödé"));
        assert!(obs.facts.iter().all(|f| f.chars().count() <= FACT_MAX));

        let mut ctx = sample_context(vec![bash]);
        ctx.prompts = vec![long.clone(), long.clone()];
        let summary = summarize(&ctx, &format!("{long} Next steps: {long}")).await;
        assert_eq!(summary.request.chars().count(), TEXT_MAX);
        assert_eq!(summary.next_steps.chars().count(), TEXT_MAX);
    }
}
