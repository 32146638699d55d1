//! Local-mode authentication, as Jupyter does it: a random login token printed once with the URL is
//! exchanged for a session cookie (HttpOnly, SameSite=Strict), and the page redirects to drop the token
//! from the address bar and history. Actions also need the session's CSRF token in a header and a
//! same-origin `Origin`, so another site can neither read nor act through the user's browser.
use std::collections::VecDeque;
use std::io::Read;
use std::sync::Mutex;

/// Sessions kept; logging in again past this drops the oldest (a user has a browser or two).
const MAX_SESSIONS: usize = 32;
/// The session cookie's name.
pub const COOKIE: &str = "sluice_session";
/// The header an action carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-sluice-csrf";

/// 32 random bytes from the kernel, hex-encoded (256 bits: not guessable, not enumerable).
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Compares in time that depends only on the lengths, so a guess learns nothing from the timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub csrf: String,
}

/// The login token and the sessions it opened.
pub struct Auth {
    login_token: String,
    sessions: Mutex<VecDeque<Session>>,
}

impl Auth {
    pub fn new(login_token: String) -> Auth {
        Auth {
            login_token,
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    pub fn login_token(&self) -> &str {
        &self.login_token
    }

    /// A new session when `token` is the login token.
    pub fn login(&self, token: &str) -> std::io::Result<Option<Session>> {
        if !constant_time_eq(token.as_bytes(), self.login_token.as_bytes()) {
            return Ok(None);
        }
        let session = Session {
            id: random_token()?,
            csrf: random_token()?,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(session.clone());
        Ok(Some(session))
    }

    /// The session whose id the cookie holds.
    pub fn session(&self, id: &str) -> Option<Session> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Every session is compared, so the time does not say which one (if any) matched.
        let mut found = None;
        for session in sessions.iter() {
            if constant_time_eq(session.id.as_bytes(), id.as_bytes()) {
                found = Some(session.clone());
            }
        }
        found
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `token` query parameter, if any.
pub fn query_token(query: &str) -> Option<String> {
    form_urlencoded_pairs(query).find(|(k, _)| k == "token").map(|(_, v)| v)
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        Some((decode(key)?, decode(value)?))
    })
}

/// Whether a request's `Origin` (when the browser sent one) is this server itself, as named by `Host`.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin == format!("http://{host}"),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_login_token_opens_a_session_and_only_its_id_finds_it() {
        let auth = Auth::new("a".repeat(64));
        assert_eq!(auth.login(&"b".repeat(64)).unwrap(), None);
        assert_eq!(auth.login("").unwrap(), None);
        let session = auth.login(&"a".repeat(64)).unwrap().expect("the token logs in");
        assert_eq!(auth.session(&session.id), Some(session.clone()));
        assert_eq!(auth.session(&session.csrf), None);
        assert_eq!(auth.session(""), None);
        assert_ne!(session.id, session.csrf);
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes() {
        let auth = Auth::new("t".into());
        let first = auth.login("t").unwrap().unwrap();
        for _ in 0..MAX_SESSIONS {
            auth.login("t").unwrap().unwrap();
        }
        assert_eq!(auth.session(&first.id), None);
        assert_eq!(auth.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_queries_and_origins_are_read_strictly() {
        assert_eq!(cookie("a=1; sluice_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("xsluice_session=xyz", COOKIE), None);
        assert_eq!(query_token("a=1&token=ab%2Bc"), Some("ab+c".into()));
        assert_eq!(query_token("tokenx=1"), None);
        assert!(same_origin(Some("http://127.0.0.1:3100"), Some("127.0.0.1:3100")));
        assert!(!same_origin(Some("http://evil.example"), Some("127.0.0.1:3100")));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:3100")));
        assert!(same_origin(None, Some("127.0.0.1:3100")));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token().unwrap());
        assert!(constant_time_eq(a.as_bytes(), a.clone().as_bytes()));
    }
}
