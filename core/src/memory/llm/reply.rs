//! Reading a model's reply: strict about what memory must hold, tolerant of how models write. Prose, code
//! fences and thinking around the elements are ignored; tag names are matched without regard to case; markup
//! inside values is removed and entities decoded; several observations per reply are fine; a type outside the
//! fixed list is mapped to the nearest one; `<skip/>` says there is nothing to keep. A reply with neither
//! memory nor a skip is an error (the caller retries).

use crate::memory::llm::prompt::OBSERVATION_TYPES;
use crate::memory::{NewObservation, NewSummary};

/// The longest title kept, in characters.
const TITLE_MAX: usize = 200;
/// The longest other value kept, in characters.
const VALUE_MAX: usize = 4_000;
/// The most items of a list kept.
const LIST_MAX: usize = 30;

/// Why a reply is not memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// No `<observation>` with a title, and no `<skip/>`.
    #[error("no <observation> with a title and no <skip/> in the reply ({0})")]
    NoObservation(String),
    /// No `<summary>` with content, and no `<skip/>`.
    #[error("no <summary> with content and no <skip/> in the reply ({0})")]
    NoSummary(String),
}

/// The observations of each of `count` tool uses (numbered from 1 in the prompt). An observation that names
/// no tool use it knows is filed under the first; one naming several, under the first it names.
pub fn observations(reply: &str, count: usize) -> Result<Vec<Vec<NewObservation>>, ReplyError> {
    let mut per_tool = vec![Vec::new(); count.max(1)];
    let mut any = false;
    for element in elements(reply, "observation") {
        let title = clip(&single_line(&value(element, "title")), TITLE_MAX);
        if title.is_empty() {
            continue;
        }
        any = true;
        let about = value(element, "about")
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<usize>().ok())
            .find(|n| (1..=count).contains(n))
            .unwrap_or(1);
        per_tool[about - 1].push(NewObservation {
            kind: observation_type(&value(element, "type")).to_string(),
            title,
            subtitle: clip(&single_line(&value(element, "subtitle")), VALUE_MAX),
            facts: list(element, "facts", "fact"),
            narrative: clip(&value(element, "narrative"), VALUE_MAX),
            concepts: list(element, "concepts", "concept").into_iter().map(|c| c.to_lowercase()).collect(),
            files_read: list(element, "files_read", "file"),
            files_modified: list(element, "files_modified", "file"),
        });
    }
    if !any && !skips(reply) {
        return Err(ReplyError::NoObservation(excerpt(reply)));
    }
    per_tool.truncate(count);
    Ok(per_tool)
}

/// The summary in a reply; `None` when it says to skip.
pub fn summary(reply: &str) -> Result<Option<NewSummary>, ReplyError> {
    for element in elements(reply, "summary") {
        let summary = NewSummary {
            request: clip(&value(element, "request"), VALUE_MAX),
            investigated: clip(&value(element, "investigated"), VALUE_MAX),
            learned: clip(&value(element, "learned"), VALUE_MAX),
            completed: clip(&value(element, "completed"), VALUE_MAX),
            next_steps: clip(&value(element, "next_steps"), VALUE_MAX),
            notes: clip(&value(element, "notes"), VALUE_MAX),
            files_read: Vec::new(),
            files_edited: Vec::new(),
        };
        let filled = [&summary.request, &summary.investigated, &summary.learned, &summary.completed];
        if filled.iter().any(|v| !v.is_empty()) {
            return Ok(Some(summary));
        }
    }
    if skips(reply) { Ok(None) } else { Err(ReplyError::NoSummary(excerpt(reply))) }
}

/// The type from the fixed list nearest to what the model wrote.
fn observation_type(written: &str) -> &'static str {
    let t = single_line(written).to_ascii_lowercase();
    let t = t.trim_matches(|c: char| !c.is_ascii_alphabetic());
    if let Some(known) = OBSERVATION_TYPES.iter().find(|k| **k == t) {
        return known;
    }
    match t {
        "bug" | "fix" | "bug-fix" | "bug fix" | "hotfix" | "failure" | "error" => "bugfix",
        "feat" | "enhancement" | "addition" | "new" => "feature",
        "cleanup" | "refactoring" | "restructure" => "refactor",
        "edit" | "update" | "modification" | "config" | "configuration" | "test" | "command" => "change",
        "choice" | "design" | "plan" | "tradeoff" | "trade-off" => "decision",
        _ => "discovery",
    }
}

/// True when the reply says there is nothing to keep.
fn skips(reply: &str) -> bool {
    let lower = reply.to_ascii_lowercase();
    ["<skip/>", "<skip />", "<skip>", "<skip "].iter().any(|s| lower.contains(s))
}

/// The inner text of every `<tag ...>...</tag>` in `text`, in order (case-insensitive names; an element
/// left open runs to the end of the text).
fn elements<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let lower = text.to_ascii_lowercase();
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&open).map(|i| i + from) {
        let after_name = at + open.len();
        // `<observations>` is not `<observation>`: the name must end here.
        let next = lower[after_name..].chars().next();
        if !matches!(next, Some('>') | Some(' ') | Some('\n') | Some('\t') | Some('\r') | Some('/')) {
            from = after_name;
            continue;
        }
        let Some(head_end) = lower[after_name..].find('>').map(|i| i + after_name + 1) else { break };
        if lower[..head_end].ends_with("/>") {
            from = head_end;
            continue;
        }
        let end = lower[head_end..].find(&close).map_or(text.len(), |i| i + head_end);
        found.push(&text[head_end..end]);
        from = (end + close.len()).min(text.len());
    }
    found
}

/// The cleaned text of the first `<tag>` inside `element`, or empty.
fn value(element: &str, tag: &str) -> String {
    elements(element, tag).first().map(|v| clean(v)).unwrap_or_default()
}

/// The items of `<list><item>..</item></list>`; a list written as lines (or bullets) is read line by line.
fn list(element: &str, list_tag: &str, item_tag: &str) -> Vec<String> {
    let Some(inner) = elements(element, list_tag).into_iter().next() else { return Vec::new() };
    let items: Vec<String> = elements(inner, item_tag).iter().map(|v| single_line(&clean(v))).collect();
    let items = if items.is_empty() {
        clean(inner).lines().map(|l| l.trim().trim_start_matches(['-', '*', '•']).trim().to_string()).collect()
    } else {
        items
    };
    let mut kept: Vec<String> = Vec::new();
    for item in items {
        let item = clip(&item, VALUE_MAX);
        if !item.is_empty() && !kept.contains(&item) && kept.len() < LIST_MAX {
            kept.push(item);
        }
    }
    kept
}

/// Text without markup: CDATA opened, tags removed, entities decoded, code fences dropped, trimmed.
fn clean(raw: &str) -> String {
    let raw = raw.replace("<![CDATA[", "").replace("]]>", "");
    let mut text = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(at) = rest.find('<') {
        text.push_str(&rest[..at]);
        // A tag is `<` then a name character, `/` or `!`; anything else (`a < b`) is text.
        let tail = &rest[at + 1..];
        let is_tag = tail.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        match (is_tag, tail.find('>')) {
            (true, Some(end)) => rest = &tail[end + 1..],
            _ => {
                text.push('<');
                rest = tail;
            }
        }
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let text: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("```")).collect();
    text.join("\n").trim().trim_matches('*').trim().to_string()
}

fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => text[..at].to_string(),
    }
}

/// The start of a reply, for an error message.
fn excerpt(reply: &str) -> String {
    let one_line = single_line(reply);
    if one_line.is_empty() { "empty".to_string() } else { format!("began {:?}", clip(&one_line, 120)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_read_into_their_fields_and_filed_under_their_tool_use() {
        let reply = "Here is what I noted.\n```xml\n\
            <observation><about>2</about><type>bugfix</type><title>Login  failed on\nempty password</title>\
            <subtitle>auth.rs</subtitle><facts><fact>check ran after hashing</fact><fact>fixed order</fact></facts>\
            <narrative>The check ran after hashing, so an empty password passed.</narrative>\
            <concepts><concept>Gotcha</concept><concept>problem-solution</concept></concepts>\
            <files_read><file>src/auth.rs</file></files_read>\
            <files_modified><file>src/auth.rs</file></files_modified></observation>\n\
            <OBSERVATION><type>discovery</type><title>Config is read once</title></OBSERVATION>\n```";
        let per_tool = observations(reply, 2).unwrap();
        assert_eq!(per_tool.len(), 2);
        assert_eq!(per_tool[0].len(), 1, "no <about>: the first tool use");
        assert_eq!(per_tool[0][0].title, "Config is read once");
        let o = &per_tool[1][0];
        assert_eq!(o.kind, "bugfix");
        assert_eq!(o.title, "Login failed on empty password");
        assert_eq!(o.subtitle, "auth.rs");
        assert_eq!(o.facts, ["check ran after hashing", "fixed order"]);
        assert_eq!(o.narrative, "The check ran after hashing, so an empty password passed.");
        assert_eq!(o.concepts, ["gotcha", "problem-solution"]);
        assert_eq!(o.files_read, ["src/auth.rs"]);
        assert_eq!(o.files_modified, ["src/auth.rs"]);
    }

    #[test]
    fn types_outside_the_list_are_mapped_and_markup_in_values_removed() {
        let reply = "<observation><type>Bug Fix</type><title><b>Fixed</b> the &lt;div&gt; &amp; a &lt; b</title>\
            <facts>- one\n- two\n</facts></observation>\
            <observation><type>whatever</type><title>T</title></observation>";
        let per_tool = observations(reply, 1).unwrap();
        assert_eq!(per_tool[0][0].kind, "bugfix");
        assert_eq!(per_tool[0][0].title, "Fixed the <div> & a < b");
        assert_eq!(per_tool[0][0].facts, ["one", "two"]);
        assert_eq!(per_tool[0][1].kind, "discovery");
    }

    #[test]
    fn a_skip_is_nothing_to_keep_and_garbage_is_an_error() {
        assert_eq!(observations("Nothing here worth it. <skip/>", 3).unwrap(), vec![Vec::new(); 3]);
        assert!(matches!(observations("I think the code is fine.", 1), Err(ReplyError::NoObservation(_))));
        assert!(observations("", 1).is_err());
        assert!(observations("<observation><title></title></observation>", 1).is_err(), "a title is required");
        assert!(observations("<observations>x</observations>", 1).is_err(), "another element");
        assert_eq!(summary("<skip />").unwrap(), None);
        assert!(matches!(summary("{\"summary\": 1}"), Err(ReplyError::NoSummary(_))));
    }

    #[test]
    fn an_about_out_of_range_goes_to_the_first_and_a_truncated_reply_still_reads() {
        let per_tool = observations("<observation><about>9, 2</about><title>A</title>", 2).unwrap();
        assert_eq!(per_tool[1][0].title, "A", "the first number in range");
        let per_tool = observations("<observation><about>7</about><title>B</title></observation>", 2).unwrap();
        assert_eq!(per_tool[0][0].title, "B");
    }

    #[test]
    fn summaries_are_read_into_their_fields() {
        let reply = "<summary><request>Fix login</request><investigated>auth.rs</investigated>\
            <learned>Hashing ran first</learned><completed>Reordered the check</completed>\
            <next_steps>Add a test</next_steps><notes>None</notes></summary>";
        let s = summary(reply).unwrap().unwrap();
        assert_eq!(
            (s.request.as_str(), s.investigated.as_str(), s.learned.as_str()),
            ("Fix login", "auth.rs", "Hashing ran first")
        );
        assert_eq!(
            (s.completed.as_str(), s.next_steps.as_str(), s.notes.as_str()),
            ("Reordered the check", "Add a test", "None")
        );
    }
}
