//! Secret redaction: well-known shapes of API keys, tokens, passwords and private keys are replaced by
//! `[REDACTED:kind]` before anything is stored (and so before anything reaches a provider).
//!
//! The built-in patterns ([`BUILT_IN`]) are compiled once per process; extra patterns from the configuration
//! make a [`Redactor`] of their own at start. `<private>` removal is [`crate::privacy`]'s.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use regex::{Regex, RegexSet};
use serde_json::Value;

/// An ASCII word boundary: the lazy DFA handles it, where a Unicode `\b` would send every search to the slow
/// engines.
macro_rules! b {
    () => {
        r"(?-u:\b)"
    };
}

/// The words a name ends with when its value is a secret by name (`DB_PASSWORD`, `client_secret`,
/// `GITHUB_TOKEN`, `api_key`). ASCII words, matched case-insensitively without Unicode case folding, which
/// would make the expression many times costlier to compile (every `memtray hook` that falls back compiles it).
macro_rules! secret_words {
    () => {
        r"(?i-u:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)"
    };
}

/// A built-in pattern: its kind (the marker's suffix), and the regular expression. A group named `secret`
/// limits the replacement to that part; otherwise the whole match is replaced.
pub struct Pattern {
    /// Shown in the marker: `[REDACTED:kind]`.
    pub kind: &'static str,
    /// What it catches, for the README and `memtray config`.
    pub description: &'static str,
    /// The regular expression.
    pub regex: &'static str,
}

/// The built-in patterns, in the order they are listed in the README.
pub const BUILT_IN: &[Pattern] = &[
    Pattern {
        kind: "private_key",
        description: "PEM private key blocks, to their END line (or to the end of the base64 when cut off)",
        regex: r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:(?s:.*?)-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,-]*)",
    },
    Pattern {
        kind: "aws_access_key",
        description: "AWS access key ids (`AKIA…`, `ASIA…`: 20 characters)",
        regex: concat!(b!(), r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}", b!()),
    },
    Pattern {
        kind: "github_token",
        description: "GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`)",
        regex: concat!(b!(), r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})", b!()),
    },
    Pattern {
        kind: "gitlab_token",
        description: "GitLab personal access tokens (`glpat-…`)",
        regex: concat!(b!(), r"glpat-[A-Za-z0-9_-]{20,}"),
    },
    Pattern {
        kind: "anthropic_key",
        description: "Anthropic API keys (`sk-ant-…`)",
        regex: concat!(b!(), r"sk-ant-[A-Za-z0-9_-]{20,}"),
    },
    Pattern {
        kind: "openai_key",
        description: "OpenAI API keys (`sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`, `sk-` and 32 or more letters and digits)",
        regex: concat!(b!(), r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,}", b!(), ")"),
    },
    Pattern {
        kind: "slack_token",
        description: "Slack tokens (`xoxb-`, `xoxa-`, `xoxp-`, `xoxr-`, `xoxs-`, `xoxo-`)",
        regex: concat!(b!(), r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    },
    Pattern {
        kind: "google_api_key",
        description: "Google API keys (`AIza…`: 39 characters)",
        regex: concat!(b!(), r"AIza[0-9A-Za-z_-]{35}"),
    },
    Pattern {
        kind: "stripe_key",
        description: "Stripe secret and restricted keys (`sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`)",
        regex: concat!(b!(), r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    },
    Pattern {
        kind: "npm_token",
        description: "npm access tokens (`npm_` and 36 letters and digits)",
        regex: concat!(b!(), r"npm_[A-Za-z0-9]{36}", b!()),
    },
    Pattern {
        kind: "jwt",
        description: "JSON Web Tokens (`eyJ….eyJ….…`)",
        regex: concat!(b!(), r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
    },
    Pattern {
        kind: "bearer_token",
        description: "the credential after `Authorization: Bearer`, `Basic`, `Token` or `Digest`, and after a lone `Bearer` when it has a digit",
        regex: r"(?i-u:(?:proxy-)?authorization[\x22']?[ \t]*[:=][ \t]*[\x22']?(?:bearer|basic|token|digest)[ \t]+|bearer[ \t]+)(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)",
    },
    Pattern {
        kind: "url_password",
        description: "the password in `scheme://user:password@host` (the user is kept)",
        regex: r"[A-Za-z][A-Za-z0-9+.-]{0,20}://[^\s:/?#@\[\]\x22'<>]{1,256}:(?P<secret>[^\s/?#@\x22'<>]{1,256})@[A-Za-z0-9\[]",
    },
    Pattern {
        kind: "assignment",
        description: "the value in `password=…`, `secret: …`, `API_KEY=…`, `\"token\": \"…\"`: a name ending in password, passwd, passphrase, secret, token, api_key, access_key, private_key or credentials, then `=` or `:` (types, `$VARIABLES`, placeholders, calls and dotted names are left alone)",
        regex: concat!(
            r"[A-Za-z0-9_.-]*",
            secret_words!(),
            r"[\x22']?[ \t]*[:=][ \t]*[\x22']?(?P<secret>[^\s\x22'`,;&<>(){}\[\]=]{4,})"
        ),
    },
];

/// Values that sit where a secret would but are not one: types, placeholders, references.
fn looks_like_a_placeholder(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "string",
        "str",
        "number",
        "int",
        "integer",
        "bool",
        "boolean",
        "null",
        "none",
        "nil",
        "undefined",
        "true",
        "false",
        "required",
        "optional",
        "any",
        "object",
        "bytes",
        "secret",
        "password",
        "token",
        "redacted",
        "hidden",
        "changeme",
        "example",
        "bearer",
        "basic",
        "digest",
    ];
    let lower = value.to_ascii_lowercase();
    value.starts_with(['$', '%', '{', '<', '*', '@', '[', '#'])
        || value.chars().all(|c| matches!(c, '*' | 'x' | 'X' | '.' | '-'))
        || WORDS.contains(&lower.as_str())
        || is_dotted_path(value)
}

/// `self.token`, `os.environ.get`, `config.api_key`: code that names a value.
fn is_dotted_path(value: &str) -> bool {
    value.contains('.')
        && value.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Whether a match is a secret after all: the text, the part to replace, and where the whole match ends.
type Check = fn(text: &str, secret: Range<usize>, whole_end: usize) -> bool;

fn always(_: &str, _: Range<usize>, _: usize) -> bool {
    true
}

/// `Bearer` alone: prose has "bearer of bad news"; a token has a digit.
fn bearer(text: &str, secret: Range<usize>, _: usize) -> bool {
    text[secret].bytes().any(|b| b.is_ascii_digit())
}

/// Not a placeholder, and not a call (`password = getpass()`).
fn assignment(text: &str, secret: Range<usize>, whole_end: usize) -> bool {
    !looks_like_a_placeholder(&text[secret]) && !text[whole_end..].starts_with('(')
}

fn url_password(text: &str, secret: Range<usize>, _: usize) -> bool {
    !looks_like_a_placeholder(&text[secret])
}

fn check_for(kind: &str) -> Check {
    match kind {
        "bearer_token" => bearer,
        "assignment" => assignment,
        "url_password" => url_password,
        _ => always,
    }
}

/// One compiled rule.
struct Rule {
    kind: &'static str,
    /// The rule's own expression, compiled on first use: the set alone tells whether it matches at all, and
    /// most text matches nothing (a `memtray hook` process would otherwise compile every rule twice). With it,
    /// whether it has a `secret` group (captures needed, not just the match).
    regex: OnceLock<(Regex, bool)>,
    source: String,
    check: Check,
}

/// Every rule, and the set that tells in one pass which of them match.
struct Rules {
    set: RegexSet,
    rules: Vec<Rule>,
    /// Shorter text cannot hold a match of any rule (0 when extra patterns make it unknown).
    min_len: usize,
    /// Object keys whose string value is a secret by name.
    secret_key: Regex,
}

impl Rules {
    fn compile(extra: &[String]) -> Result<Rules, regex::Error> {
        let mut sources: Vec<(&'static str, &str)> = BUILT_IN.iter().map(|p| (p.kind, p.regex)).collect();
        sources.extend(extra.iter().map(|p| ("custom", p.as_str())));
        let set = RegexSet::new(sources.iter().map(|(_, r)| r))?;
        let rules = sources
            .into_iter()
            .map(|(kind, source)| {
                // The set compiled every source already, so compiling one later cannot fail.
                Rule { kind, regex: OnceLock::new(), source: source.to_string(), check: check_for(kind) }
            })
            .collect();
        let secret_key = Regex::new(concat!(secret_words!(), "$"))?;
        Ok(Rules { set, rules, min_len: if extra.is_empty() { 8 } else { 0 }, secret_key })
    }

    fn built_in() -> Arc<Rules> {
        static RULES: OnceLock<Arc<Rules>> = OnceLock::new();
        RULES.get_or_init(|| Arc::new(Rules::compile(&[]).expect("the built-in patterns compile"))).clone()
    }
}

/// Redacts secrets; cheap to clone. Off ([`Redactor::off`]) it changes nothing.
#[derive(Clone)]
pub struct Redactor {
    /// `None` when redaction is off. Shared: every redactor without extra patterns holds the process's one
    /// compilation of the built-in rules.
    rules: Option<Arc<Rules>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rules {
            None => f.write_str("Redactor(off)"),
            Some(rules) => write!(f, "Redactor({} patterns)", rules.rules.len()),
        }
    }
}

impl Default for Redactor {
    /// The built-in patterns.
    fn default() -> Redactor {
        Redactor { rules: Some(Rules::built_in()) }
    }
}

impl Redactor {
    /// The built-in patterns and `extra` ones, or nothing when `enabled` is false.
    pub fn new(enabled: bool, extra: &[String]) -> Result<Redactor, regex::Error> {
        Ok(Redactor {
            rules: match (enabled, extra.is_empty()) {
                (false, _) => None,
                (true, true) => Some(Rules::built_in()),
                (true, false) => Some(Arc::new(Rules::compile(extra)?)),
            },
        })
    }

    /// A redactor that changes nothing.
    pub fn off() -> Redactor {
        Redactor { rules: None }
    }

    /// True when it redacts anything at all.
    pub fn is_on(&self) -> bool {
        self.rules.is_some()
    }

    /// `text` with every secret replaced by `[REDACTED:kind]`.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(rules) = &self.rules else { return Cow::Borrowed(text) };
        if text.len() < rules.min_len {
            return Cow::Borrowed(text);
        }
        let matched = rules.set.matches(text);
        if !matched.matched_any() {
            return Cow::Borrowed(text);
        }
        let mut spans: Vec<(usize, usize, &str)> = Vec::new();
        for index in matched.iter() {
            let rule = &rules.rules[index];
            let (regex, grouped) = rule.regex.get_or_init(|| {
                let regex = Regex::new(&rule.source).expect("the set compiled it");
                let grouped = regex.capture_names().any(|n| n == Some("secret"));
                (regex, grouped)
            });
            if *grouped {
                for caps in regex.captures_iter(text) {
                    let whole = caps.get(0).expect("group 0 is the match");
                    let secret = caps.name("secret").unwrap_or(whole);
                    if (rule.check)(text, secret.range(), whole.end()) {
                        spans.push((secret.start(), secret.end(), rule.kind));
                    }
                }
            } else {
                for m in regex.find_iter(text) {
                    if (rule.check)(text, m.range(), m.end()) {
                        spans.push((m.start(), m.end(), rule.kind));
                    }
                }
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        // Overlapping matches (a bearer token that is also a JWT) become one marker, named by the one that
        // starts first (the longer, then the one listed first, of those that start together).
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end, kind)) = spans.next() {
            while let Some(&(next_start, next_end, _)) = spans.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.push_str(&text[at..start]);
            out.push_str("[REDACTED:");
            out.push_str(kind);
            out.push(']');
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Redacts every string inside a JSON value in place, object keys included; a string under a key that
    /// names a secret (`"password": "hunter2"`) is replaced whole.
    pub fn json(&self, value: &mut Value) {
        let Some(rules) = &self.rules else { return };
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.text(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                if map.keys().any(|k| matches!(self.text(k), Cow::Owned(_))) {
                    let old = std::mem::take(map);
                    for (key, value) in old {
                        map.insert(self.text(&key).into_owned(), value);
                    }
                }
                for (key, value) in map.iter_mut() {
                    match value {
                        Value::String(s) if rules.secret_key.is_match(key) => {
                            if s.chars().count() >= 4 && !looks_like_a_placeholder(s) && !s.starts_with("[REDACTED:") {
                                *s = "[REDACTED:assignment]".to_string();
                            }
                        }
                        other => self.json(other),
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(text: &str) -> String {
        Redactor::default().text(text).into_owned()
    }

    /// Secrets assembled at run time, so this file holds no string a secret scanner would flag.
    fn fake(prefix: &str, body: &str, n: usize) -> String {
        format!("{prefix}{}", body.repeat(n))
    }

    fn jwt() -> String {
        format!("{}.{}.{}", fake("eyJ", "hbGc", 3), fake("eyJ", "zdWI", 4), "SflKxwRJSMeKKF2QT4fwpM")
    }

    #[test]
    fn every_built_in_shape_is_redacted() {
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEA7", "q83k+/Zz=="
        );
        let cases: Vec<(String, &str)> = vec![
            (format!("key id {} ok", fake("AKIA", "ABCD", 4)), "key id [REDACTED:aws_access_key] ok"),
            (fake("ghp_", "aB3d", 9), "[REDACTED:github_token]"),
            (fake("gho_", "aB3d", 9), "[REDACTED:github_token]"),
            (fake("ghs_", "aB3d", 9), "[REDACTED:github_token]"),
            (fake("github_pat_", "11AB_cd", 6), "[REDACTED:github_token]"),
            (fake("glpat-", "aB3d", 5), "[REDACTED:gitlab_token]"),
            (fake("sk-ant-api03-", "aB3d_", 10), "[REDACTED:anthropic_key]"),
            (fake("sk-proj-", "aB3d-", 10), "[REDACTED:openai_key]"),
            (fake("sk-", "aB3d", 12), "[REDACTED:openai_key]"),
            (fake("xoxb-", "1234-", 4), "[REDACTED:slack_token]"),
            (fake("AIza", "Sy_3d", 7), "[REDACTED:google_api_key]"),
            (fake("sk_live_", "aB3d", 6), "[REDACTED:stripe_key]"),
            (fake("npm_", "aB3d", 9), "[REDACTED:npm_token]"),
            (jwt(), "[REDACTED:jwt]"),
            (
                "curl -H 'Authorization: Bearer abc123def456ghi' x".into(),
                "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' x",
            ),
            ("Authorization: Basic dXNlcjpodW50ZXIy".into(), "Authorization: Basic [REDACTED:bearer_token]"),
            ("token: bearer 9a8b7c6d5e4f3a2b1c0d".into(), "token: bearer [REDACTED:bearer_token]"),
            (
                "git clone https://deploy:hunter2@example.com/r.git".into(),
                "git clone https://deploy:[REDACTED:url_password]@example.com/r.git",
            ),
            ("postgres://app:s3cr%21t@db:5432/x".into(), "postgres://app:[REDACTED:url_password]@db:5432/x"),
            (format!("{pem}\nafter"), "[REDACTED:private_key]\nafter"),
            ("DB_PASSWORD=hunter22 make".into(), "DB_PASSWORD=[REDACTED:assignment] make"),
            ("password = \"correct horse\"".into(), "password = \"[REDACTED:assignment] horse\""),
            ("{\"client_secret\": \"q8w7e6r5\"}".into(), "{\"client_secret\": \"[REDACTED:assignment]\"}"),
            ("GET /cb?code=1&token=abc123xyz&x=1".into(), "GET /cb?code=1&token=[REDACTED:assignment]&x=1"),
            ("api_key: 9f8e7d6c5b4a".into(), "api_key: [REDACTED:assignment]"),
            ("aws_secret_access_key = wJalrXUtnFEMIK7MDENG".into(), "aws_secret_access_key = [REDACTED:assignment]"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(&text), want, "{text}");
        }
    }

    #[test]
    fn a_cut_off_private_key_is_redacted_to_the_end_of_its_base64() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n";
        assert_eq!(redact(text), "[REDACTED:private_key]");
    }

    #[test]
    fn ordinary_text_and_code_are_left_alone() {
        let keep = [
            "tokenizer = AutoTokenizer.from_pretrained(\"bert-base\")",
            "max_tokens: 1024",
            "password: str",
            "token: string;",
            "let token = self.next_token();",
            "password = getpass()",
            "if password == expected:",
            "token = self.token",
            "API_KEY=${API_KEY}",
            "export GITHUB_TOKEN=$GITHUB_TOKEN",
            "password: ********",
            "token=<your-token>",
            "the bearer of bad news arrived",
            "Bearer tokens are described in RFC 6750",
            "risk-management-and-compliance-strategy",
            "ssh://git@github.com:22/org/repo.git",
            "http://localhost:8080/api/health",
            "https://user@example.com/path",
            "postgres://app:${DB_PASS}@db/x",
            "sk-learn is not a key",
            "AKIA is a prefix, AKIAshort is not a key",
            "secret_santa = yes",
            "password_hash = bcrypt(x)",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
            "commit 3f9a2c1 fixes the token refresh",
            "eyJhbGciOi is half a header",
            "test result: ok. 14 passed; 0 failed",
        ];
        for text in keep {
            assert_eq!(redact(text), text, "{text}");
        }
    }

    #[test]
    fn overlapping_matches_make_one_marker() {
        let text = format!("Authorization: Bearer {} end", jwt());
        assert_eq!(redact(&text), "Authorization: Bearer [REDACTED:jwt] end");
    }

    #[test]
    fn off_changes_nothing_and_extra_patterns_apply() {
        let text = format!("id {}", fake("AKIA", "ABCD", 4));
        assert_eq!(Redactor::off().text(&text), text);
        let custom = Redactor::new(true, &["acme-[0-9]{6}".into(), "pin (?P<secret>[0-9]{4})".into()]).unwrap();
        assert_eq!(custom.text("acme-123456 and pin 9876"), "[REDACTED:custom] and pin [REDACTED:custom]");
        assert_eq!(custom.text(&text), "id [REDACTED:aws_access_key]");
        assert!(Redactor::new(true, &["(".into()]).is_err());
        assert!(!Redactor::new(false, &[]).unwrap().is_on());
    }

    #[test]
    fn json_values_keys_and_secret_fields() {
        let key = fake("ghp_", "aB3d", 9);
        let mut v = json!({
            "command": format!("gh auth login --with-token {key}"),
            "env": {"DB_PASSWORD": "hunter2", "API_TOKEN": "string", "max_tokens": 5, "PATH": "/usr/bin"},
            "list": [format!("x {key}")],
            key.clone(): 1,
        });
        Redactor::default().json(&mut v);
        assert_eq!(
            v,
            json!({
                "command": "gh auth login --with-token [REDACTED:github_token]",
                "env": {"DB_PASSWORD": "[REDACTED:assignment]", "API_TOKEN": "string", "max_tokens": 5, "PATH": "/usr/bin"},
                "list": ["x [REDACTED:github_token]"],
                "[REDACTED:github_token]": 1,
            })
        );
    }

    #[test]
    fn multibyte_text_is_safe() {
        let text = format!("é {} ü", fake("AKIA", "ABCD", 4));
        assert_eq!(redact(&text), "é [REDACTED:aws_access_key] ü");
        assert_eq!(redact("ünïcödé password=pässwörd1 ß"), "ünïcödé password=[REDACTED:assignment] ß");
    }
}
