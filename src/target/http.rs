//! An HTTP resource: scheme, the endpoint (host resolved, port by default the scheme's) and
//! the path by segments. Credentials and the query are never part of it.

use std::fmt;

use reqwest::Url;

use super::host::Endpoint;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Http {
    scheme: String,
    endpoint: Endpoint,
    /// `/` and the segments, percent-escapes decoded, without a trailing `/`.
    path: String,
}

impl Http {
    pub(crate) fn of(value: &str) -> Result<Http, String> {
        let url = parse(value)?;
        let (scheme, endpoint) = web_endpoint(&url, "an HTTP URL")?;
        let segments: Vec<String> = url
            .path()
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        Ok(Http {
            scheme,
            endpoint,
            path: format!("/{}", segments.join("/")),
        })
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same scheme and server, and one path holds the other.
    pub(crate) fn overlaps(&self, other: &Http) -> bool {
        self.scheme == other.scheme
            && self.endpoint.overlaps(&other.endpoint)
            && super::nested(&self.path, &other.path)
    }
}

/// `http://127.0.0.1:8080/health (this host)`.
impl fmt::Display for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}{}",
            self.scheme,
            self.endpoint.shown(),
            self.path,
            self.endpoint.remarks()
        )
    }
}

/// A URL, or why not (the parser's reasons never repeat the input).
pub(crate) fn parse(value: &str) -> Result<Url, String> {
    Url::parse(value).map_err(|error| format!("it is not a URL ({error})"))
}

/// The scheme (`http` or `https`) and the server of a web URL, whose port defaults to the
/// scheme's.
pub(crate) fn web_endpoint(url: &Url, what: &str) -> Result<(String, Endpoint), String> {
    let scheme = url.scheme();
    if !matches!(scheme, "http" | "https") {
        return Err(format!("a `{scheme}:` URL is not {what}"));
    }
    let host = url.host_str().ok_or("it names no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((scheme.to_string(), Endpoint::tcp(host, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &str, b: &str) -> bool {
        let of = |value: &str| Http::of(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        of(a).overlaps(&of(b))
    }

    #[test]
    fn default_ports_case_and_trailing_slashes_are_spellings() {
        for (a, b) in [
            ("http://127.0.0.1/health", "http://localhost:80/health/"),
            ("https://LOCALHOST/health", "https://[::1]:443/health"),
            ("http://127.0.0.1:8080", "http://localhost:8080/"),
            ("http://127.0.0.1:8080/a/./b", "http://localhost:8080/a/b"),
            (
                "http://127.0.0.1:8080/%7Euser",
                "http://localhost:8080/~user",
            ),
            ("http://u:secret@127.0.0.1/x?token=1", "http://127.0.0.1/x"),
            ("HTTP://127.0.0.1//x", "http://127.0.0.1/x"),
        ] {
            assert!(overlaps(a, b), "{a} {b}");
        }
    }

    #[test]
    fn paths_nest_by_segments() {
        assert!(overlaps(
            "http://127.0.0.1/api",
            "http://127.0.0.1/api/v1/x"
        ));
        assert!(overlaps("http://127.0.0.1/", "http://127.0.0.1/anything"));
        assert!(!overlaps("http://127.0.0.1/api", "http://127.0.0.1/apiv2"));
        assert!(!overlaps("http://127.0.0.1/a/b", "http://127.0.0.1/a/c"));
    }

    #[test]
    fn scheme_port_and_host_tell_servers_apart() {
        assert!(!overlaps(
            "http://127.0.0.1:8080/x",
            "http://127.0.0.1:8081/x"
        ));
        assert!(!overlaps("http://127.0.0.1/x", "https://127.0.0.1/x"));
        assert!(!overlaps("http://127.0.0.1/x", "http://192.0.2.200/x"));
        assert!(!overlaps("http://127.0.0.1:443/x", "https://127.0.0.1/x"));
    }

    #[test]
    fn it_is_shown_without_credentials_or_query() {
        let http = Http::of("https://u:pw@LocalHost/hook/?token=abc").expect("url");
        assert_eq!(http.to_string(), "https://localhost:443/hook (this host)");
        for bad in [
            "http://",
            "http://[::1",
            "notaurl",
            "redis://h/0",
            "http://h:99999/",
        ] {
            assert!(Http::of(bad).is_err(), "{bad}");
        }
    }
}
