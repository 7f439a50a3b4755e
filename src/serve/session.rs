//! Who is signed in: sessions kept in the server's memory (a restart signs everyone out), each
//! with its own CSRF token that every form carries; and the limit on sign-in attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::users::Role;

/// How long a sign-in lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Every state-changing request must carry it (a form field).
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, URL-safe base64.
pub fn token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // A failing system random source leaves no safe way on: stop rather than mint weak tokens.
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// A new session for `user`: its token (the cookie's value).
    pub fn open(&self, user: &str, role: Role) -> String {
        let token = token();
        self.insert(token.clone(), user, role);
        token
    }

    fn insert(&self, key: String, user: &str, role: Role) -> Session {
        let session = Session {
            user: user.to_owned(),
            role,
            csrf: token(),
            expires: Instant::now() + LIFETIME,
        };
        let mut sessions = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires > Instant::now());
        sessions.insert(key, session.clone());
        session
    }

    pub fn get(&self, token: &str) -> Option<Session> {
        let sessions = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// The session of a person a trusted proxy signed in: one per name, made on first sight
    /// (for its CSRF token), its role as the users file says now.
    pub fn of_proxied(&self, user: &str, role: Role) -> Session {
        let key = format!("proxy:{user}");
        match self.get(&key) {
            Some(session) if session.role == role => session,
            _ => self.insert(key, user, role),
        }
    }

    pub fn close(&self, token: &str) {
        let mut sessions = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(token);
    }
}

/// Failed sign-ins per name and per address: after [`FREE`] failures, each further attempt
/// waits out a pause that doubles with every failure, from 30 s up to 15 min; a success clears
/// the count.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failures allowed before attempts are slowed down.
pub const FREE: u32 = 5;

impl Limiter {
    /// `Err(wait)` while `key` must wait before trying again.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(key) {
            Some((count, last)) if *count >= FREE => {
                let pause = pause(*count);
                let waited = last.elapsed();
                match waited < pause {
                    true => Err(pause - waited),
                    false => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

fn pause(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE).min(5);
    Duration::from_secs(30 << doublings).min(Duration::from_secs(15 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_and_the_sixth_attempt_waits() {
        let limiter = Limiter::default();
        for _ in 0..FREE - 1 {
            limiter.failed("alice");
            assert!(limiter.check("alice").is_ok());
        }
        limiter.failed("alice");
        let wait = limiter.check("alice").unwrap_err();
        assert!(wait > Duration::from_secs(25), "{wait:?}");
        assert!(limiter.check("bob").is_ok());
        limiter.succeeded("alice");
        assert!(limiter.check("alice").is_ok());
        assert_eq!(pause(100), Duration::from_secs(900));
    }

    #[test]
    fn a_session_is_found_by_its_token_only_until_closed() {
        let sessions = Sessions::default();
        let token = sessions.open("alice", Role::Approver);
        let session = sessions.get(&token).unwrap();
        assert_eq!(session.user, "alice");
        assert_ne!(session.csrf, token);
        assert!(sessions.get("guess").is_none());
        sessions.close(&token);
        assert!(sessions.get(&token).is_none());
    }
}
