//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the web app's tests: a small client of the W3C WebDriver
//! protocol over the same `ureq` the other tests use, and PNG screenshots written to
//! `target/screenshots/` (or `COOPSYNC_SCREENSHOTS`).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: two Chromiums on a 2-core machine only slow each other.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Where screenshots go (created on first use).
pub fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("COOPSYNC_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A Chromium session; dropped, it quits the browser and stops the driver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    pub downloads: PathBuf,
    _profile: crate::TempDir,
    _turn: MutexGuard<'static, ()>,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Element {
    /// The element's attribute (empty when it has none).
    pub fn attr(&self, b: &Browser, name: &str) -> String {
        b.call(
            "GET",
            &b.s(&format!("/element/{}/attribute/{name}", self.0)),
            None,
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }
}

impl Browser {
    /// A new browser with `lang` as the browser's language (`en`, `km`), or `None` (with
    /// a printed NOTICE) where no Chromium is installed. `COOPSYNC_REQUIRE_BROWSER=1`
    /// (CI) turns the skip into a failure.
    pub fn start(lang: &str) -> Option<Browser> {
        let chromium = find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let driver = find_binary(&["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if std::env::var("COOPSYNC_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("COOPSYNC_REQUIRE_BROWSER=1 but chromium or chromedriver is missing");
            }
            crate::notice("browser test skipped: install chromium and chromium-driver");
            return None;
        };
        let turn = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = crate::TempDir::new();
        let downloads = profile.path.join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,768",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.path.join("profile").display()),
                ],
                "prefs": {
                    "intl.accept_languages": lang,
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let mut browser = Browser {
            driver: child,
            base,
            session: String::new(),
            agent,
            downloads,
            _profile: profile,
            _turn: turn,
        };
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    /// One WebDriver command; an error answer is returned, not a panic (a page that
    /// navigates between finding an element and reading it makes the element stale).
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string().as_bytes()),
        };
        let response = result.expect("webdriver request");
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        if status >= 400 {
            return Err(format!("{status} {text}"));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(v["value"].clone())
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", &self.s("/title"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The elements matching `css` (none is not an error).
    pub fn all(&self, css: &str) -> Vec<Element> {
        self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
        .collect()
    }

    /// The first element matching `css`; panics with the page's text when there is none.
    pub fn find(&self, css: &str) -> Element {
        self.all(css).into_iter().next().unwrap_or_else(|| {
            panic!(
                "no element `{css}` on {} — page text: {}",
                self.url(),
                self.text_of("body")
            )
        })
    }

    /// The elements matching `css` inside `e`.
    pub fn all_in(&self, e: &Element, css: &str) -> Vec<Element> {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/elements", e.0)),
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
        .collect()
    }

    /// Waits (up to 20 s) until `ready` holds.
    pub fn wait_for(&self, ready: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out on {}: {}",
                self.url(),
                self.text_of("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 20 s) until the first element matching `css` contains `text`.
    pub fn wait_for_text(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Reading while the page loads may fail; only the deadline ends the wait.
            if self.text_of(css).contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {css} on {}: {}",
                self.url(),
                self.text_of("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Accepts the open `confirm()` dialog.
    pub fn accept_alert(&self) {
        self.call("POST", &self.s("/alert/accept"), None);
    }

    pub fn click(&self, e: &Element) {
        self.call("POST", &self.s(&format!("/element/{}/click", e.0)), None);
    }

    pub fn type_into(&self, e: &Element, text: &str) {
        self.call("POST", &self.s(&format!("/element/{}/clear", e.0)), None);
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses `path` in a file input (the driver sends the local file's path).
    pub fn type_into_file(&self, e: &Element, path: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", e.0)),
            Some(json!({ "text": path })),
        );
    }

    pub fn text(&self, e: &Element) -> String {
        self.call("GET", &self.s(&format!("/element/{}/text", e.0)), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The visible text of the first element matching `css` ("" when there is none).
    /// An element that goes stale between finding and reading it (the page changed under
    /// the read) is looked up again, a few times, before the error stands.
    pub fn text_of(&self, css: &str) -> String {
        let mut last = String::new();
        for _ in 0..5 {
            let Some(e) = self.all(css).into_iter().next() else {
                return String::new();
            };
            match self.try_call("GET", &self.s(&format!("/element/{}/text", e.0)), None) {
                Ok(v) => return v.as_str().unwrap_or("").to_string(),
                Err(err) if err.contains("stale element reference") => last = err,
                Err(err) => panic!("webdriver text of `{css}`: {err}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("webdriver text of `{css}` stayed stale: {last}")
    }

    /// Fills the field `name` inside `scope` (a CSS selector) and submits with the button
    /// matching `button` there.
    pub fn fill(&self, scope: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let e = self.find(&format!("{scope} [name=\"{name}\"]"));
            self.type_into(&e, value);
        }
    }

    pub fn press(&self, css: &str) {
        let e = self.find(css);
        self.click(&e);
    }

    /// Runs `script` in the page and returns its result.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The cookies of the current page, as WebDriver reports them (`httpOnly`,
    /// `sameSite`, `secure`).
    pub fn cookies(&self) -> Vec<Value> {
        self.call("GET", &self.s("/cookie"), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn delete_cookies(&self) {
        self.call("DELETE", &self.s("/cookie"), None);
    }

    /// A PNG of the window, written as `<name>.png` in the screenshot folder.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("screenshot is base64");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Sets the window's size (e.g. a tablet's 800 × 1280).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the whole page (the window made as tall as the page, then put back).
    pub fn screenshot_full(&self, name: &str) -> PathBuf {
        let rect = self.call("GET", &self.s("/window/rect"), None);
        let (width, height) = (
            rect["width"].as_i64().unwrap_or(1366),
            rect["height"].as_i64().unwrap_or(768),
        );
        let page = self
            .script("return document.documentElement.scrollHeight")
            .as_i64()
            .unwrap_or(height)
            .clamp(height, 4000);
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": page + 140})),
        );
        let path = self.screenshot(name);
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
        path
    }

    /// Waits for a download whose name ends with `suffix` to finish; returns its path.
    pub fn wait_for_download(&self, suffix: &str) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(dir) = std::fs::read_dir(&self.downloads) {
                for f in dir.flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if name.ends_with(suffix) {
                        return f.path();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no download ending {suffix}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
