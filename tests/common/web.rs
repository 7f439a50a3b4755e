//! `drillbook serve` for tests: the real binary serving a state directory on a free port, and a
//! person at it — an HTTP client that keeps its own session cookie and reads the CSRF token off
//! the pages, as a browser would.

use std::path::Path;
use std::time::Duration;

use super::{Drillbook, Running, wait_for};

/// The server, killed when dropped.
pub struct Server {
    pub url: String,
    _running: Running,
}

impl Server {
    /// Serves the state directory of `dir` on a free port of 127.0.0.1, with `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let running = Drillbook::in_dir(dir)
            .args(&args)
            .deadline(Duration::from_secs(600))
            .spawn();
        let mut url = String::new();
        wait_for(Duration::from_secs(30), "the server to listen", || {
            let (_, stderr) = running.output_so_far();
            match stderr.split_once("listening on ") {
                Some((_, rest)) if rest.contains('\n') => {
                    url = rest.lines().next().unwrap_or_default().trim().to_owned();
                    true
                }
                _ => false,
            }
        });
        Server {
            url,
            _running: running,
        }
    }
}

/// Alice runs `p.yaml` (a gate on `promote` that needs two people) as run `run_id` at a
/// terminal and approves first; the terminal then waits for the second person.
pub fn first_approver_at_a_terminal(dir: &Path, run_id: &str) -> super::screen::Screen {
    let session = Drillbook::in_dir(dir)
        .args(&["run", "p.yaml", "--as", "alice", "--run-id", run_id])
        .env("NO_COLOR", "1")
        .pty();
    let mut screen = super::screen::Screen::new(session);
    screen.until("Approve promote? [yes/no]:");
    screen.keys("yes\r");
    screen.until("approved so far: alice");
    screen
}

/// What a request got back.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The page's CSRF token (its forms' hidden field).
    pub fn csrf(&self) -> String {
        let (_, rest) = self
            .body
            .split_once("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF token in: {}", self.body));
        rest.split('"').next().unwrap().to_owned()
    }

    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// One person's browser, without JavaScript: redirects are not followed, so each answer is seen.
pub struct Person {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    cookie: Option<String>,
    /// Extra headers sent with every request (a proxy's identity header).
    pub headers: Vec<(String, String)>,
}

impl Person {
    pub fn at(server: &Server) -> Person {
        Person {
            base: server.url.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            cookie: None,
            headers: Vec::new(),
        }
    }

    fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request;
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = self.runtime.block_on(request.send()).expect("request");
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.runtime.block_on(response.text()).unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(request)
    }

    /// Signs in; the answer (a redirect to the runs when it worked).
    pub fn sign_in(&mut self, name: &str, password: &str) -> Page {
        self.post("/login", &[("name", name), ("password", password)])
    }
}
