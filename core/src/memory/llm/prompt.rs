//! The one prompt format every model gets: fixed instructions (the system prompt) asking for claude-mem's
//! observation and summary schema as XML elements, and the material: the project, the user's prompts in
//! the span, what was already noted, then the numbered tool uses or the session's end.
//!
//! Everything here was scrubbed at intake (`<private>` removed, secrets redacted); long values are clipped.

use std::fmt::Write;

use crate::memory::NewObservation;
use crate::memory::provider::SessionContext;
use crate::queue::message::{SummaryRequest, ToolUse};

/// The most characters of a tool's input shown.
const INPUT_MAX: usize = 4_000;
/// The most characters of a tool's output shown.
const OUTPUT_MAX: usize = 6_000;
/// The most characters of a prompt or a last message shown.
const TEXT_MAX: usize = 2_000;
/// The most earlier observations shown as context.
const NOTED_MAX: usize = 20;
/// The most of a summary span's tool uses listed.
const SPAN_TOOLS_MAX: usize = 60;

/// The observation types a model may use.
pub const OBSERVATION_TYPES: &[&str] = &["bugfix", "feature", "refactor", "change", "discovery", "decision"];

/// Instructions for turning tool uses into observations.
pub const OBSERVE_SYSTEM: &str = "\
You keep the long-term memory of a developer's coding sessions. A coding agent works in a project; you are \
shown what it just did, as numbered tool uses, with the user's requests and what was already noted. Write \
down what a teammate, or the agent in a later session, should know: what was learned about the code, what \
was decided and why, what the bug was and how it was fixed, what changed. Leave out routine steps that teach \
nothing (listing a folder, a repeated read).

Answer with XML elements only, no other text. For each thing worth remembering:
<observation>
  <about>the numbers of the tool uses it comes from, separated by spaces</about>
  <type>one of: bugfix, feature, refactor, change, discovery, decision</type>
  <title>a short title</title>
  <subtitle>one line of context</subtitle>
  <facts><fact>a short, self-contained fact</fact></facts>
  <narrative>two to four sentences: what happened and why it matters</narrative>
  <concepts><concept>how-it-works, why-it-exists, what-changed, problem-solution, gotcha, pattern or trade-off</concept></concepts>
  <files_read><file>path</file></files_read>
  <files_modified><file>path</file></files_modified>
</observation>
If none of the tool uses is worth remembering, answer <skip/> alone.";

/// Instructions for summarizing a span of a session.
pub const SUMMARIZE_SYSTEM: &str = "\
You keep the long-term memory of a developer's coding sessions. A coding agent has finished answering the \
user; you are shown the user's requests, what was noted along the way, the tools used and the agent's last \
message. Summarize this part of the session for a teammate, or for the agent in a later session.

Answer with one XML element only, no other text:
<summary>
  <request>what the user asked for</request>
  <investigated>what was looked at</investigated>
  <learned>what was learned about the code or the problem</learned>
  <completed>what was done</completed>
  <next_steps>what is left to do, if anything</next_steps>
  <notes>anything else worth keeping</notes>
</summary>
If nothing happened that is worth a summary, answer <skip/> alone.";

/// The material for observing `tools` (numbered from 1).
pub fn observe(ctx: &SessionContext, tools: &[ToolUse]) -> String {
    let mut out = String::new();
    context(&mut out, ctx);
    let _ = writeln!(out, "<tool_uses>");
    for (i, tool) in tools.iter().enumerate() {
        tool_use(&mut out, i + 1, tool);
    }
    let _ = writeln!(out, "</tool_uses>");
    let _ = writeln!(out, "\nWrite the observations for tool uses 1 to {}.", tools.len());
    out
}

/// The material for summarizing the span in `ctx`.
pub fn summarize(ctx: &SessionContext, request: &SummaryRequest) -> String {
    let mut out = String::new();
    context(&mut out, ctx);
    if !ctx.tool_uses.is_empty() {
        let _ = writeln!(out, "<tools_used>");
        let skipped = ctx.tool_uses.len().saturating_sub(SPAN_TOOLS_MAX);
        for tool in &ctx.tool_uses[skipped..] {
            let input = clip(&compact(&tool.tool_input), 300);
            let failed = if tool.error.is_some() { " (failed)" } else { "" };
            let _ = writeln!(out, "- {}{failed}: {}", tool.tool_name, escape(&input));
        }
        let _ = writeln!(out, "</tools_used>");
    }
    if !request.last_user_message.is_empty() {
        let _ = writeln!(
            out,
            "<last_user_message>{}</last_user_message>",
            escape(&clip(&request.last_user_message, TEXT_MAX))
        );
    }
    if !request.last_assistant_message.is_empty() {
        let text = escape(&clip(&request.last_assistant_message, TEXT_MAX));
        let _ = writeln!(out, "<last_assistant_message>{text}</last_assistant_message>");
    }
    let _ = writeln!(out, "\nWrite the summary.");
    out
}

fn context(out: &mut String, ctx: &SessionContext) {
    let _ = writeln!(out, "<project>{}</project>", escape(&ctx.project));
    if !ctx.prompts.is_empty() {
        let _ = writeln!(out, "<user_requests>");
        for prompt in &ctx.prompts {
            let _ = writeln!(out, "<request>{}</request>", escape(&clip(prompt, TEXT_MAX)));
        }
        let _ = writeln!(out, "</user_requests>");
    }
    if !ctx.observations.is_empty() {
        let _ = writeln!(out, "<already_noted>");
        let skipped = ctx.observations.len().saturating_sub(NOTED_MAX);
        for o in &ctx.observations[skipped..] {
            noted(out, o);
        }
        let _ = writeln!(out, "</already_noted>");
    }
}

fn noted(out: &mut String, o: &NewObservation) {
    let subtitle = if o.subtitle.is_empty() { String::new() } else { format!(" ({})", o.subtitle) };
    let _ = writeln!(out, "- [{}] {}{}", o.kind, escape(&o.title), escape(&subtitle));
}

fn tool_use(out: &mut String, number: usize, tool: &ToolUse) {
    let _ = writeln!(out, "<tool_use number=\"{number}\">");
    let _ = writeln!(out, "<tool>{}</tool>", escape(&tool.tool_name));
    if let Some(agent) = &tool.subagent {
        let _ = writeln!(out, "<subagent>{}</subagent>", escape(agent));
    }
    let _ = writeln!(out, "<input>{}</input>", escape(&clip(&compact(&tool.tool_input), INPUT_MAX)));
    match &tool.error {
        Some(error) => {
            let _ = writeln!(out, "<error>{}</error>", escape(&clip(error, OUTPUT_MAX)));
        }
        None => {
            let _ = writeln!(out, "<output>{}</output>", escape(&clip(&compact(&tool.tool_response), OUTPUT_MAX)));
        }
    }
    let _ = writeln!(out, "</tool_use>");
}

/// A JSON value as text: a string as itself, anything else as compact JSON.
fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most `max` characters, marked when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}… [{} more characters]", &text[..at], text[at..].chars().count()),
    }
}

/// Text safe between XML-like tags: `<`, `>` and `&` as entities, so material cannot pose as the format.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, input: serde_json::Value, response: serde_json::Value) -> ToolUse {
        ToolUse {
            tool_name: name.into(),
            tool_input: input,
            tool_response: response,
            cwd: "/work/app".into(),
            tool_use_id: None,
            error: None,
            subagent: None,
        }
    }

    #[test]
    fn tool_uses_are_numbered_with_their_context_and_escaped() {
        let ctx = SessionContext {
            project: "app".into(),
            prompts: vec!["fix the <login> bug".into()],
            observations: vec![NewObservation {
                kind: "discovery".into(),
                title: "Login reads config".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut failing = tool("Bash", json!({"command": "cargo test"}), json!(null));
        failing.error = Some("exit 101".into());
        let text = observe(&ctx, &[tool("Read", json!({"file_path": "src/a.rs"}), json!("fn a() {}")), failing]);
        assert!(text.contains("<project>app</project>"), "{text}");
        assert!(text.contains("<request>fix the &lt;login&gt; bug</request>"), "{text}");
        assert!(text.contains("- [discovery] Login reads config"), "{text}");
        assert!(text.contains("<tool_use number=\"1\">\n<tool>Read</tool>"), "{text}");
        assert!(text.contains("<tool_use number=\"2\">\n<tool>Bash</tool>"), "{text}");
        assert!(text.contains("<error>exit 101</error>"), "{text}");
        assert!(text.contains("tool uses 1 to 2"), "{text}");
    }

    #[test]
    fn long_values_are_clipped_on_character_boundaries() {
        let long = "é".repeat(INPUT_MAX + 10);
        let text = observe(&SessionContext::default(), &[tool("Write", json!(long), json!(null))]);
        assert!(text.contains("… [10 more characters]"), "{}", &text[..200]);
    }
}
