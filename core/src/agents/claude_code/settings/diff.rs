//! The line diff behind [`describe`](super::describe): which lines of the old text are kept, removed or added
//! in the new one, and how a diff is shown with a little context around each changed region. Knows only
//! lines of text, nothing of settings or JSON.

/// Above this many cells the line diff stops looking for a minimal diff (see [`diff_lines`]).
const DIFF_CELL_LIMIT: usize = 4_000_000;
/// Unchanged lines shown around each changed region by [`with_context`].
const DIFF_CONTEXT: usize = 2;

/// The line diff of `before` to `after` with [`DIFF_CONTEXT`] unchanged lines around each changed region:
/// `- ` removed, `+ ` added, `  ` kept, `...` between distant regions. Empty when no line changed.
pub(super) fn with_context(before: &str, after: &str) -> String {
    let before: Vec<&str> = before.lines().collect();
    let after: Vec<&str> = after.lines().collect();
    let ops = diff_lines(&before, &after);
    let near_change: Vec<bool> = (0..ops.len())
        .map(|i| {
            let lo = i.saturating_sub(DIFF_CONTEXT);
            let hi = (i + DIFF_CONTEXT + 1).min(ops.len());
            ops[lo..hi].iter().any(|op| !matches!(op, Op::Keep(_)))
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = false;
    for (op, shown) in ops.iter().zip(near_change) {
        if !shown {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push("...".to_owned());
        }
        skipped = false;
        out.push(match op {
            Op::Keep(line) => format!("  {line}"),
            Op::Del(line) => format!("- {line}"),
            Op::Add(line) => format!("+ {line}"),
        });
    }
    out.join("\n")
}

/// One step of a line diff.
#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    /// A line in both texts.
    Keep(&'a str),
    /// A line only in the old text.
    Del(&'a str),
    /// A line only in the new text.
    Add(&'a str),
}

/// A line diff of `old` to `new`: common prefix and suffix, and a longest-common-subsequence diff of the middle
/// (or, when the middle is huge, all of it removed then added).
fn diff_lines<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest.iter().rev().zip(new_rest.iter().rev()).take_while(|(a, b)| a == b).count();
    let a = &old_rest[..old_rest.len() - suffix];
    let b = &new_rest[..new_rest.len() - suffix];

    let mut ops: Vec<Op<'a>> = old[..prefix].iter().map(|l| Op::Keep(l)).collect();
    let cells = (a.len() + 1).saturating_mul(b.len() + 1);
    if cells > DIFF_CELL_LIMIT {
        ops.extend(a.iter().map(|l| Op::Del(l)));
        ops.extend(b.iter().map(|l| Op::Add(l)));
    } else {
        // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
        let width = b.len() + 1;
        let mut lcs = vec![0u32; cells];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i * width + j] = if a[i] == b[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push(Op::Keep(a[i]));
                (i, j) = (i + 1, j + 1);
            } else if i < a.len() && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Del(a[i])); // Removals first, so a replaced line reads "- old" then "+ new".
                i += 1;
            } else {
                ops.push(Op::Add(b[j]));
                j += 1;
            }
        }
    }
    ops.extend(old_rest[old_rest.len() - suffix..].iter().map(|l| Op::Keep(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{http, settings_file};
    use super::super::{Change, describe, install};
    use super::*;

    #[test]
    fn describe_shows_the_added_lines() {
        let (_dir, path) = settings_file("{\n  \"model\": \"opus\"\n}\n");
        let change = install(&path, &http(4417), true).unwrap();
        let text = describe(&change);
        assert!(text.contains("+   \"hooks\": {"), "{text}");
        assert!(text.contains("+             \"url\": \"http://127.0.0.1:4417/hooks/claude-code\","), "{text}");
        assert!(text.contains("-   \"model\": \"opus\"\n+   \"model\": \"opus\","), "{text}");
        assert!(text.lines().all(|l| l.starts_with("+ ") || l.starts_with("- ") || l.starts_with("  ")), "{text}");

        let missing = Change { path: "x".into(), before: String::new(), after: change.after.clone(), changed: true };
        assert!(describe(&missing).lines().all(|l| l.starts_with("+ ")));
    }

    #[test]
    fn diff_keeps_context_around_distant_changes() {
        let old: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut new = old.clone();
        new[2] = "changed 2".into();
        new.insert(15, "inserted".into());
        let change = Change { path: "x".into(), before: old.join("\n"), after: new.join("\n"), changed: true };
        let expected = "  line 0\n  line 1\n- line 2\n+ changed 2\n  line 3\n  line 4\n...\n  line 13\n  line 14\n\
                        + inserted\n  line 15\n  line 16";
        assert_eq!(describe(&change), expected);

        let a = ["a", "b", "c", "d"];
        let b = ["a", "x", "c", "y", "d"];
        let ops = diff_lines(&a, &b);
        let kept: Vec<_> = ops.iter().filter_map(|op| if let Op::Keep(l) = op { Some(*l) } else { None }).collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }
}
