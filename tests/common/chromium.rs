//! Headless Chromium, to render an HTML report the way a reader's browser does: a PNG of the
//! page and a PDF as "print to PDF" makes it. `.ci/run` installs Debian's `chromium`; where it
//! is missing, the rendering is skipped with a message (the HTML checks still run).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser, if one is installed.
pub fn browser() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(name))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Renders `html` to `<stem>.png` and `<stem>.pdf` beside it; `None` (and a message) without
/// a browser. Offline: any request the page made would fail, and the page must not need one.
pub fn render(html: &Path) -> Option<(PathBuf, PathBuf)> {
    let Some(browser) = browser() else {
        eprintln!(
            "skipped: no chromium to render {} (apt-get install chromium)",
            html.display()
        );
        return None;
    };
    let url = format!("file://{}", html.display());
    let png = html.with_extension("png");
    let pdf = html.with_extension("pdf");
    let profile = html.with_extension("profile");
    let common = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", profile.display()),
        "--host-resolver-rules=MAP * ~NOTFOUND".into(),
    ];
    for target in [
        vec![
            format!("--screenshot={}", png.display()),
            "--window-size=1200,2200".into(),
        ],
        vec![
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    ] {
        let output = Command::new(&browser)
            .args(&common)
            .args(&target)
            .arg(&url)
            .output()
            .expect("chromium starts");
        assert!(
            output.status.success(),
            "chromium {target:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Some((png, pdf))
}
