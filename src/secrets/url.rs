//! Passwords in URLs: masked wherever they appear, declared as secrets or not, and taken
//! apart (as written and percent-decoded) so that a masker catches every form of them.

use super::MASK;

/// `scheme://user:password@host` with the password masked, for passwords nobody declared as a
/// secret (written literally in a playbook or a `--var`): a URL's password is a secret anyway.
pub fn mask_url_passwords(text: &str) -> std::borrow::Cow<'_, str> {
    static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+@")
            .expect("a valid pattern")
    });
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    URL_PASSWORD.replace_all(text, format!("${{1}}{MASK}@"))
}

/// [`mask_url_passwords`] on every string of a JSON value.
pub fn mask_url_passwords_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(masked) = mask_url_passwords(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_url_passwords_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_url_passwords_json),
        _ => {}
    }
}

/// The password of `scheme://user:password@host/...`, as written. The authority ends at the
/// first `/`, `?` or `#`, and the userinfo at the last `@` before it, as URL parsers do.
pub(super) fn url_password(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once("://")?;
    let mut scheme_chars = scheme.chars();
    let valid_scheme = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (_user, password) = userinfo.split_once(':')?;
    Some(password)
}

/// Decodes `%XX`; a `%` not followed by two hex digits is kept as it is.
pub(super) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

/// Encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`).
pub(super) fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_parsing() {
        assert_eq!(url_password("redis://:pw@cache:6379/0"), Some("pw"));
        assert_eq!(url_password("https://user:a:b@host/path@x"), Some("a:b"));
        assert_eq!(url_password("postgres://user@host/db"), None);
        assert_eq!(url_password("https://host/p?user=a:b@c"), None);
        assert_eq!(url_password("not a url: x@y"), None);
        assert_eq!(percent_decode("a%40b%zz%4"), b"a@b%zz%4");
    }

    #[test]
    fn url_passwords_are_masked_even_when_undeclared() {
        assert_eq!(
            mask_url_passwords("redis://:hunter2@cache:6379/0 and postgres://app:pw@db/x"),
            "redis://:***@cache:6379/0 and postgres://app:***@db/x"
        );
        assert_eq!(
            mask_url_passwords("postgres://app@db/x s3://bucket/a:b@c"),
            "postgres://app@db/x s3://bucket/a:b@c"
        );
        let mut value = serde_json::json!({"url": "https://u:p@h/", "n": [1, "x://a:b@c"]});
        mask_url_passwords_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"url": "https://u:***@h/", "n": [1, "x://a:***@c"]})
        );
    }
}
