//! `drillbook serve` in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, fantoccini). A person signs in, finds a run waiting at a
//! four-eyes gate that another process runs at its terminal, approves it as the second person,
//! watches the run finish in the live view (the page's script), and opens its HTML report; a
//! viewer finds nothing to press, a request without the form's token is refused, and five
//! wrong passwords slow the next sign-in down. Screenshots of the runs, a live run and the pending
//! approvals are left in `target/tmp/screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::web::Server;
use common::{Drillbook, events, journal, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};

const GATED: &str = r#"version: 1
name: gated
objectives: { rto: 30m }
steps:
  - { id: prepare, kind: command, run: [touch, prepared] }
  - id: promote
    kind: command
    needs: [prepare]
    run: [touch, promoted]
    approval: { prompt: "Promote the standby?", approvers: 2 }
  - { id: settle, kind: command, needs: [promote], run: [sleep, "2"], clock: stop }
"#;

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        wait_for(Duration::from_secs(20), "chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sign_in(browser: &Client, server: &Server, name: &str, password: &str) {
    browser
        .goto(&format!("{}/login", server.url))
        .await
        .unwrap();
    type_into(browser, "input[name=name]", name).await;
    type_into(browser, "input[name=password]", password).await;
    press(browser, "button[type=submit]").await;
    arrive(browser, server, "/runs").await;
}

/// Waits (up to a minute) for the page at `path` that a click leads to.
async fn arrive(browser: &Client, server: &Server, path: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(60))
        .for_url(&format!("{}{path}", server.url).parse().unwrap())
        .await
        .unwrap();
}

/// Types `text` into the field `css` finds.
async fn type_into(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Clicks what `css` finds.
async fn press(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The page once it shows `text`: a click that submits a form returns before the answer has
/// replaced the page on a slow machine, so what it brings is waited for (up to a minute).
async fn page_with(browser: &Client, text: &str) -> String {
    let mut page = String::new();
    for _ in 0..600 {
        page = browser.source().await.unwrap_or_default();
        if page.contains(text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page
}

/// Signs out with the header's button, and waits for the sign-in page it leads to.
async fn sign_out(browser: &Client, server: &Server) {
    press(browser, "header form button").await;
    arrive(browser, server, "/login").await;
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(name), png).unwrap();
}

#[test]
fn the_second_approver_approves_in_a_browser_and_watches_the_run_finish() {
    let test = Drillbook::new().playbook("p.yaml", GATED).playbook(
        "n.yaml",
        "version: 1\nname: nightly\nsteps:\n  - { id: dump, kind: command, run: [\"true\"] }\n",
    );
    let dir = test.dir().to_path_buf();
    let users = drillbook::serve::users::path(&dir.join(".drillbook"));
    use drillbook::serve::users::{Role, add};
    add(&users, "bob", Role::Approver, "bob's long password").unwrap();
    add(&users, "victor", Role::Viewer, "victor's long password").unwrap();
    // Two earlier, finished runs of another playbook, for the list and the health page.
    for id in ["nightly-00", "nightly-0"] {
        let earlier = Drillbook::in_dir(&dir)
            .args(&["run", "n.yaml", "--run-id", id])
            .run();
        assert_eq!(earlier.status, 0, "{}", earlier.stderr);
    }
    let server = Server::start(&dir, &[]);

    // Alice runs the drill at a terminal and approves first.
    let mut screen = common::web::first_approver_at_a_terminal(&dir, "gated-1");

    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let browser = browser(&driver).await;

        // A viewer sees the gate but has nothing to press.
        sign_in(&browser, &server, "victor", "victor's long password").await;
        browser
            .goto(&format!("{}/approvals", server.url))
            .await
            .unwrap();
        let page = browser.source().await.unwrap();
        assert!(page.contains("Promote the standby?"), "{page}");
        assert!(!page.contains("name=\"decision\""), "{page}");
        sign_out(&browser, &server).await;

        // Bob signs in: the runs, the waiting gate, the live run.
        sign_in(&browser, &server, "bob", "bob's long password").await;
        let runs = browser.source().await.unwrap();
        assert!(
            runs.contains("gated-1") && runs.contains("nightly-0"),
            "{runs}"
        );
        shot(&browser, "runs.png").await;
        browser
            .goto(&format!("{}/approvals", server.url))
            .await
            .unwrap();
        let approvals = browser.source().await.unwrap();
        assert!(approvals.contains("approved so far: alice"), "{approvals}");
        shot(&browser, "approvals.png").await;
        browser
            .goto(&format!("{}/runs/gated-1", server.url))
            .await
            .unwrap();
        let live = browser.find(Locator::Id("live")).await.unwrap();
        assert!(live.text().await.unwrap().contains("promote"));
        shot(&browser, "live-run.png").await;

        // Bob approves on the run's page; the page follows the run to its end by itself.
        type_into(&browser, "input[name=reason]", "standby checked").await;
        press(&browser, "button[name=decision][value=approve]").await;
        let page = page_with(&browser, "class=\"flash").await;
        let said = browser.find(Locator::Css("p.flash")).await;
        let said = match said {
            Ok(said) => said.text().await.unwrap_or_default(),
            Err(error) => panic!("no p.flash after approving ({error}):\n{page}"),
        };
        assert!(said.contains("bob approved"), "{said}");
        shot(&browser, "live-run-approved.png").await;
        let mut over = false;
        for _ in 0..60 {
            // The page replaces the element as it polls: one read may find it gone (stale).
            let status = match browser.find(Locator::Id("status")).await {
                Ok(status) => status.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if status == "succeeded" {
                over = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(over, "the live view never showed the run succeeded");
        shot(&browser, "run-finished.png").await;
        browser
            .goto(&format!("{}/health", server.url))
            .await
            .unwrap();
        let health = browser.source().await.unwrap();
        assert!(health.contains("RTO against previous runs"), "{health}");
        shot(&browser, "health.png").await;
        browser.back().await.unwrap();

        // Its HTML report.
        browser
            .find(Locator::LinkText("HTML"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let report = page_with(&browser, "approved by bob").await;
        assert!(report.contains("approved by bob"), "{report}");

        // A script elsewhere, riding on Bob's cookie without the form's token, is refused.
        browser.goto(&format!("{}/runs", server.url)).await.unwrap();
        let forged = browser
            .execute(
                "return fetch('/runs/gated-1/decide', {method: 'POST', headers: \
                 {'content-type': 'application/x-www-form-urlencoded'}, \
                 body: 'step=promote&decision=reject'}).then(r => r.status);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(forged, serde_json::json!(403));

        // Five wrong passwords, and the sixth attempt waits, even with the right one.
        sign_out(&browser, &server).await;
        for attempt in 1..=6 {
            let password = if attempt == 6 {
                "bob's long password"
            } else {
                "guess"
            };
            browser
                .goto(&format!("{}/login", server.url))
                .await
                .unwrap();
            type_into(&browser, "input[name=name]", "bob").await;
            type_into(&browser, "input[name=password]", password).await;
            press(&browser, "button[type=submit]").await;
            let expected = match attempt {
                6 => "too many failed sign-ins",
                _ => "wrong name or password",
            };
            let page = page_with(&browser, expected).await;
            assert!(page.contains(expected), "attempt {attempt}: {page}");
        }
        browser.close().await.unwrap();
    });
    assert_eq!(screen.exit_status(), 0);
    let decided = events(
        &journal(&dir, "gated-1"),
        "approval_decided",
        Some("promote"),
    )
    .into_iter()
    .map(|d| d["by"].as_str().unwrap().to_owned())
    .collect::<Vec<_>>();
    assert_eq!(decided, ["alice", "bob"]);
}
