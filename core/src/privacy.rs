//! `<private>…</private>` removal, applied before anything is stored.
//!
//! Tags match ASCII case-insensitively; an opening tag with no closing tag removes everything after it in
//! that text. JSON values are stripped string by string, so their shape survives.

use std::borrow::Cow;

const OPEN: &str = "<private>";
const CLOSE: &str = "</private>";

/// Returns `text` without its private parts.
pub fn strip(text: &str) -> Cow<'_, str> {
    let Some(first) = find_ci(text, OPEN, 0) else { return Cow::Borrowed(text) };
    let mut out = String::with_capacity(text.len());
    let mut rest_start = 0;
    let mut open = Some(first);
    while let Some(start) = open {
        out.push_str(&text[rest_start..start]);
        match find_ci(text, CLOSE, start + OPEN.len()) {
            Some(end) => rest_start = end + CLOSE.len(),
            None => return Cow::Owned(out),
        }
        open = find_ci(text, OPEN, rest_start);
    }
    out.push_str(&text[rest_start..]);
    Cow::Owned(out)
}

/// Strips a prompt. `None` when nothing of it is left: an entirely private prompt.
pub fn strip_prompt(prompt: &str) -> Option<String> {
    let stripped = strip(prompt);
    if stripped.trim().is_empty() && !prompt.trim().is_empty() { None } else { Some(stripped.into_owned()) }
}

/// Strips every string inside a JSON value, in place.
pub fn strip_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(clean) = strip(s) {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(strip_json),
        _ => {}
    }
}

/// Finds `needle` (ASCII) in `haystack` from byte `from`, ignoring ASCII case.
fn find_ci(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let hay = haystack.as_bytes();
    let needle = needle.as_bytes();
    if from >= hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_closed_blocks_and_keeps_the_rest() {
        assert_eq!(strip("a <private>secret</private> b"), "a  b");
        assert_eq!(strip("x<PRIVATE>1</Private>y<private>2</private>z"), "xyz");
        assert_eq!(strip("nothing to hide"), "nothing to hide");
    }

    #[test]
    fn an_unclosed_tag_removes_everything_after_it() {
        assert_eq!(strip("keep <private>gone </private-ish and more"), "keep ");
        assert_eq!(strip("keep<private>"), "keep");
    }

    #[test]
    fn multibyte_text_is_safe() {
        assert_eq!(strip("é<private>ü</private>ß"), "éß");
    }

    #[test]
    fn entirely_private_prompts_are_none() {
        assert_eq!(strip_prompt(" <private>all of it</private>\n"), None);
        assert_eq!(strip_prompt("<private>unclosed"), None);
        assert_eq!(strip_prompt("fix <private>x</private> it").as_deref(), Some("fix  it"));
    }

    #[test]
    fn json_strings_are_stripped_in_place() {
        let mut v = json!({"command": "echo <private>token</private>ok", "list": ["<private>a</private>b", 3]});
        strip_json(&mut v);
        assert_eq!(v, json!({"command": "echo ok", "list": ["b", 3]}));
    }
}
