//! POSIX shell words, for the command line of memtray's command hook: quoting a program's path as one word,
//! and reading one word back with its quotes and backslashes resolved. Text that is not exactly one word (an
//! unquoted blank or operator) reads as nothing; nothing is expanded.

/// The value of `text` if it is exactly one POSIX shell word (quotes and backslashes resolved), else `None`.
pub(super) fn shell_word(text: &str) -> Option<String> {
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => word.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        '\n' => {}
                        c @ ('$' | '`' | '"' | '\\') => word.push(c),
                        c => {
                            word.push('\\');
                            word.push(c);
                        }
                    },
                    c => word.push(c),
                }
            },
            '\\' => match chars.next()? {
                '\n' => {}
                c => word.push(c),
            },
            c if c.is_whitespace() || ";&|<>()`".contains(c) => return None,
            c => word.push(c),
        }
    }
    (!text.is_empty()).then_some(word)
}

/// `text` as one POSIX shell word: as is when made only of `[A-Za-z0-9/._+-]`, else in single quotes (an
/// embedded `'` becomes `'\''`).
pub(super) fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+-".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::HookMode;
    use super::super::entries::is_memtray_command;
    use super::*;

    #[test]
    fn program_paths_are_quoted_when_needed_and_recognised_back() {
        assert_eq!(shell_quote("/usr/local/bin/memtray"), "/usr/local/bin/memtray");
        assert_eq!(shell_quote("/opt/a-b_c+d.e/memtray"), "/opt/a-b_c+d.e/memtray");
        assert_eq!(shell_quote("/a b/memtray"), "'/a b/memtray'");
        assert_eq!(shell_quote("/it's/memtray"), r"'/it'\''s/memtray'");
        assert_eq!(shell_quote("/$HOME/memtray"), "'/$HOME/memtray'");
        assert_eq!(shell_quote(""), "''");
        for program in ["/usr/bin/memtray", "/a b/memtray", "/it's here/memtray", "/x\"y/$z/`w`;/memtray"] {
            let hook = HookMode::Command { program: program.into() }.hook_for("Stop");
            let command = hook["command"].as_str().unwrap();
            assert!(is_memtray_command(command), "{command}");
            assert_eq!(shell_word(command.strip_suffix(" hook").unwrap()).as_deref(), Some(program));
        }
    }
}
