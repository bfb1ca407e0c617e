//! Who is signed in: Argon2id password hashes, sessions kept in the database by the hash
//! of their random id, the CSRF token each session's forms carry, and the brake on repeated
//! wrong passwords.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// A session ends after this long without a request (SPEC §11).
pub const IDLE: Duration = Duration::from_secs(12 * 60 * 60);

/// The session cookie's name.
pub const COOKIE: &str = "crm_session";

/// Wrong passwords for one login within [`WINDOW`] after which it is refused for a window.
const TRIES: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// An Argon2id hash of a password (PHC string, salt included), as stored.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` is the one `stored` was made from. A malformed stored hash matches
/// nothing. Without a stored hash (an unknown login) a hash is still checked, so that the
/// answer takes as long and does not tell which logins exist.
pub fn password_matches(password: &str, stored: Option<&str>) -> bool {
    static DECOY: LazyLock<String> =
        LazyLock::new(|| hash_password("decoy for unknown logins").unwrap_or_default());
    let matches = |stored: &str| {
        PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    };
    match stored {
        Some(stored) => matches(stored),
        None => {
            matches(&DECOY);
            false
        }
    }
}

/// A new random secret (256 bits) as hex: a session id or a CSRF token.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Recent wrong passwords per login, in this process.
#[derive(Default)]
pub struct Brake {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Brake {
    /// The login has had [`TRIES`] wrong passwords within the last [`WINDOW`].
    pub fn engaged(&self, login: &str) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = failures.get_mut(login) else {
            return false;
        };
        times.retain(|t| t.elapsed() < WINDOW);
        times.len() >= TRIES
    }

    /// Notes a wrong password for the login.
    pub fn failed(&self, login: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget logins whose failures are all old, so guessed names do not pile up.
        failures.retain(|_, times| times.iter().any(|t| t.elapsed() < WINDOW));
        failures
            .entry(login.to_owned())
            .or_default()
            .push(Instant::now());
    }

    /// A right password clears the login's failures.
    pub fn succeeded(&self, login: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_and_matches_only_its_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches("correct horse", Some(&hash)));
        assert!(!password_matches("correct hors", Some(&hash)));
        assert!(!password_matches("correct horse", Some("not a hash")));
        assert!(!password_matches("decoy for unknown logins", None));
    }

    #[test]
    fn the_brake_engages_after_five_wrong_passwords_and_a_right_one_clears_it() {
        let brake = Brake::default();
        for _ in 0..4 {
            brake.failed("ivanova");
        }
        assert!(!brake.engaged("ivanova"));
        brake.failed("ivanova");
        assert!(brake.engaged("ivanova"));
        assert!(!brake.engaged("petrova"));
        brake.succeeded("ivanova");
        assert!(!brake.engaged("ivanova"));
    }
}
