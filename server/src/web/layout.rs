//! The page shell every web page shares (head, navigation, language switch, sign-out),
//! the message an action leaves on the page it returns to, pagers and small helpers.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{i18n::Lang, session::CSRF_FIELD, session::WebUser};
use crate::domain::access::Role;

/// Bumped with the assets: their URLs carry it so a browser never mixes versions.
pub const ASSET_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-2");

/// Where a page sits in the navigation (its link is marked current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Conflicts,
    Duplicates,
    WalkIns,
    Flags,
    Quarantine,
    Waiting,
    Records,
    Accounts,
    Devices,
    Exports,
    Imports,
    Audit,
    None,
}

fn nav_items(lang: Lang, role: Role) -> Vec<(Section, &'static str, &'static str)> {
    let mut items = vec![
        (
            Section::Dashboard,
            "/dashboard",
            lang.t("Dashboard", "ផ្ទាំងសង្ខេប"),
        ),
        (
            Section::Conflicts,
            "/review/conflicts",
            lang.t("Conflicts", "ទិន្នន័យផ្ទុយគ្នា"),
        ),
        (
            Section::Duplicates,
            "/review/duplicates",
            lang.t("Duplicates", "ឈ្មោះស្ទួន"),
        ),
        (
            Section::WalkIns,
            "/review/walk-ins",
            lang.t("Walk-ins", "អ្នកចូលរួមក្រៅបញ្ជី"),
        ),
        (Section::Flags, "/review/flags", lang.t("Flags", "ការព្រមាន")),
        (
            Section::Quarantine,
            "/review/quarantine",
            lang.t("Quarantine", "ការផ្លាស់ប្ដូរដែលបានឃាត់"),
        ),
        (
            Section::Waiting,
            "/review/waiting",
            lang.t("Waiting", "កំពុងរង់ចាំ"),
        ),
        (Section::Records, "/records", lang.t("Records", "កំណត់ត្រា")),
        (Section::Accounts, "/accounts", lang.t("Accounts", "គណនី")),
        (Section::Devices, "/devices", lang.t("Devices", "ឧបករណ៍")),
        (Section::Exports, "/exports", lang.t("Exports", "នាំចេញ")),
    ];
    if role == Role::NationalAdmin {
        items.push((Section::Imports, "/imports", lang.t("Imports", "នាំចូល")));
        items.push((Section::Audit, "/audit", lang.t("Audit log", "កំណត់ហេតុសវនកម្ម")));
    }
    items
}

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · coopsync" }
        link rel="stylesheet" href={ "/assets/style.css?v=" (ASSET_VERSION) };
        link rel="icon" href={ "/assets/icon.svg?v=" (ASSET_VERSION) } type="image/svg+xml";
        script src={ "/assets/app.js?v=" (ASSET_VERSION) } defer {}
        @if lang == Lang::Km {
            // Only Khmer pages name the font's range, so English pages never fetch it.
            link rel="preload" href={ "/assets/noto-sans-khmer-400.woff2?v=" (ASSET_VERSION) }
                as="font" type="font/woff2" crossorigin;
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(user: &WebUser) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(user.csrf); }
}

/// A page of the signed-in app.
pub fn page(
    user: &WebUser,
    section: Section,
    title: &str,
    done: Option<&str>,
    body: Markup,
) -> Markup {
    let lang = user.lang;
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(lang, title)) }
            body {
                a.skip href="#main" { (lang.t("Skip to content", "រំលងទៅខ្លឹមសារ")) }
                header.top {
                    a.brand href="/dashboard" { "coopsync" }
                    nav aria-label=(lang.t("Main", "ម៉ឺនុយ")) {
                        ul {
                            @for (s, href, label) in nav_items(lang, user.principal.role) {
                                li { a href=(href) aria-current=[(s == section).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span.user { (user.username) }
                        form method="post" action="/language" {
                            (csrf(user))
                            input type="hidden" name="lang" value=(other.code());
                            button.link type="submit" lang=(other.code()) { (other.name()) }
                        }
                        form method="post" action="/logout" {
                            (csrf(user))
                            button.link type="submit" { (lang.t("Sign out", "ចាកចេញ")) }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(done) = done {
                        p.done role="status" { (done) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without the signed-in navigation (sign-in, errors before sign-in).
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(lang, title)) }
            body.bare {
                main #main {
                    p.brand { "coopsync" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// "Next page" (and "first page" when not on it) for a cursor-paged list; `base` is the
/// list's URL with its filters.
pub fn pager(lang: Lang, base: &str, cursor: Option<&str>, next: Option<&str>) -> Markup {
    let join = if base.contains('?') { '&' } else { '?' };
    html! {
        nav.pager aria-label=(lang.t("Pages", "ទំព័រ")) {
            @if cursor.is_some() {
                a href=(base) { (lang.t("« First page", "« ទំព័រដំបូង")) }
            }
            @if let Some(next) = next {
                a rel="next" href={ (base) (join) "cursor=" (encode(next)) } { (lang.t("Next page »", "ទំព័របន្ទាប់ »")) }
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `base?k=v&…` with the filters that are set.
pub fn url_with(base: &str, params: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect();
    if q.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", q.join("&"))
    }
}

/// A JSON value as an admin reads it: strings bare, `null` as a dash.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An empty list's line.
pub fn empty(lang: Lang) -> Markup {
    html! { p.empty { (lang.t("Nothing here.", "មិនមានអ្វីទេ។")) } }
}

/// A select of fixed options with one selected.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], selected: Option<&str>) -> Markup {
    html! {
        label {
            span { (label) }
            select name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[Some(*value) == selected] { (text) }
                }
            }
        }
    }
}

/// Raw, trusted markup (server-drawn SVG), never text from a record.
pub fn trusted(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}
