//! The per-user secret: 32 random bytes, hex-encoded, in the file `token` in the state folder (0600, in a
//! 0700 folder), made by whoever needs it first. Reading memory and administering through the API need it;
//! the inspector gets it as an HttpOnly, SameSite=Strict cookie. A client makes a server prove it knows the
//! secret (an HMAC of a fresh nonce) before it sends anything, so another account's memtray holding the port
//! gets nothing.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The secret's file name in the state folder.
pub const FILE: &str = "token";
/// The header clients send the secret in.
pub const HEADER: &str = "x-memtray-token";
/// The inspector's cookie.
pub const COOKIE: &str = "memtray_token";

/// Errors reading or making the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("cannot use memtray's secret {}: {source}", path.display())]
    Io {
        /// The secret's file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file holds something that is not a secret memtray made.
    #[error("{} does not hold a memtray secret; remove it and memtray makes a new one", path.display())]
    Malformed {
        /// The secret's file.
        path: PathBuf,
    },
    /// The system has no randomness to offer.
    #[error("no randomness for a new secret: {0}")]
    Random(getrandom::Error),
}

/// This user's secret. Its `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Reads the secret in `state_dir`, making it (and the folder, 0700) if there is none yet. Two processes
    /// making it at once agree on one: it is written aside and linked into place, and the loser reads the
    /// winner's.
    pub fn load_or_create(state_dir: &Path) -> Result<Secret, SecretError> {
        if let Some(secret) = Secret::load(state_dir)? {
            return Ok(secret);
        }
        let path = state_dir.join(FILE);
        let io_error = |source| SecretError::Io { path: path.clone(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(io_error)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(SecretError::Random)?;
        let secret = hex::encode(bytes);
        let aside = state_dir.join(format!(".{FILE}.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut f| f.write_all(secret.as_bytes()).and_then(|()| f.sync_all()));
        let linked = written.and_then(|()| std::fs::hard_link(&aside, &path));
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => Ok(Secret(secret)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Secret::load(state_dir)?.ok_or_else(|| SecretError::Malformed { path: path.clone() })
            }
            Err(e) => Err(io_error(e)),
        }
    }

    /// Reads the secret in `state_dir`; `None` when there is none yet.
    pub fn load(state_dir: &Path) -> Result<Option<Secret>, SecretError> {
        let path = state_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim();
                if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Some(Secret(text.to_string())))
                } else {
                    Err(SecretError::Malformed { path })
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::Io { path, source }),
        }
    }

    /// The secret itself, for a header, a cookie or a URL the user opens.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }

    /// The proof that this secret is known: HMAC-SHA256 of `nonce` under it, hex-encoded.
    pub fn proof(&self, nonce: &str) -> String {
        hex::encode(self.mac(nonce).finalize().into_bytes())
    }

    /// Whether `proof` is [`Secret::proof`] of `nonce`, in constant time.
    pub fn verify(&self, nonce: &str, proof: &str) -> bool {
        hex::decode(proof).is_ok_and(|bytes| self.mac(nonce).verify_slice(&bytes).is_ok())
    }

    fn mac(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(nonce.as_bytes());
        mac
    }
}

/// A fresh nonce for [`Secret::proof`].
pub fn nonce() -> Result<String, SecretError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(SecretError::Random)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(Secret::load(&state).unwrap().is_none());
        let made = Secret::load_or_create(&state).unwrap();
        let again = Secret::load_or_create(&state).unwrap();
        assert!(made.matches(again.expose()));
        assert!(!made.matches(&"0".repeat(64)) && !made.matches(""));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.join(FILE)), 0o600);
        assert_eq!(mode(&state), 0o700);
        assert_eq!(format!("{made:?}"), "Secret(…)", "never printed");
    }

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_and_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let mine = Secret::load_or_create(&dir.path().join("a")).unwrap();
        let theirs = Secret::load_or_create(&dir.path().join("b")).unwrap();
        let n = nonce().unwrap();
        assert!(mine.verify(&n, &mine.proof(&n)));
        assert!(!mine.verify(&n, &theirs.proof(&n)));
        assert!(!mine.verify(&nonce().unwrap(), &mine.proof(&n)));
        assert!(!mine.verify(&n, "not hex"));
    }

    #[test]
    fn a_file_that_is_not_a_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "hello").unwrap();
        assert!(matches!(Secret::load(dir.path()), Err(SecretError::Malformed { .. })));
    }
}
