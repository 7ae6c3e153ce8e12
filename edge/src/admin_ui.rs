//! The admin dashboard: `GET /admin/ui` (an HTML shell), `GET /admin/ui/app.js` and
//! `GET /admin/ui/app.css`. The three files are built from `edge/ui/src` by
//! `scripts/build-dashboard` (esbuild, pinned in `edge/ui/package-lock.json`) into `edge/ui/dist`,
//! which is committed, and embedded in the Wasm here: the page needs no CDN, no KV and no npm at
//! `cargo build` time.
//!
//! The shell holds no data and needs no credential: the page asks for the admin key, keeps it in
//! `sessionStorage` and sends it as `authorization: Bearer` on each call to the admin API
//! (`/admin/stats`, `/admin/config`, `/admin/usage/...`), which checks it as for any other client.
//! No cookie is ever set, so the admin API has no CSRF surface (docs/observability.md, "Dashboard").
//!
//! Every response carries a strict Content-Security-Policy (scripts and styles only from these
//! URLs, no inline code or style, fetches only to this origin, no framing), `nosniff` and
//! `no-referrer`. The HTML is revalidated on each load; the script and style are referenced with
//! their content hash in the query (`app.js?v=…`, written by the build), so they can be cached
//! for a year.

use crate::http::{Body, Response};

const INDEX_HTML: &str = include_str!("../ui/dist/index.html");
const APP_JS: &str = include_str!("../ui/dist/app.js");
const APP_CSS: &str = include_str!("../ui/dist/app.css");

/// The policy on every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One of the dashboard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
}

impl Asset {
    /// The file at `path` (without query), or `None` when the path is not the dashboard's.
    pub fn from_path(path: &str) -> Option<Asset> {
        match path {
            "/admin/ui" | "/admin/ui/" | "/admin/ui/index.html" => Some(Asset::Index),
            "/admin/ui/app.js" => Some(Asset::Script),
            "/admin/ui/app.css" => Some(Asset::Style),
            _ => None,
        }
    }

    fn content(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Asset::Index => (INDEX_HTML, "text/html; charset=utf-8", "no-cache"),
            Asset::Script => (APP_JS, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
            Asset::Style => (APP_CSS, "text/css; charset=utf-8", "public, max-age=31536000, immutable"),
        }
    }
}

/// The response for `asset` (`GET`; `HEAD` gets the headers with an empty body).
pub fn serve(asset: Asset, head: bool) -> Response {
    let (text, content_type, cache_control) = asset.content();
    let body = if head { Body::Empty } else { Body::Bytes(text.as_bytes().to_vec()) };
    Response { status: 200, headers: Vec::new(), body }
        .with_header("content-type", content_type)
        .with_header("cache-control", cache_control)
        .with_header("content-security-policy", CONTENT_SECURITY_POLICY)
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer")
        .with_header("x-frame-options", "DENY")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_the_dashboard_files() {
        assert_eq!(Asset::from_path("/admin/ui"), Some(Asset::Index));
        assert_eq!(Asset::from_path("/admin/ui/"), Some(Asset::Index));
        assert_eq!(Asset::from_path("/admin/ui/app.js"), Some(Asset::Script));
        assert_eq!(Asset::from_path("/admin/ui/app.css"), Some(Asset::Style));
        assert_eq!(Asset::from_path("/admin/ui/../config"), None);
        assert_eq!(Asset::from_path("/admin/uix"), None);
        assert_eq!(Asset::from_path("/admin/stats"), None);
    }

    #[test]
    fn the_shell_references_its_hashed_assets_and_has_no_inline_code() {
        let html = INDEX_HTML;
        assert!(html.contains("src=\"/admin/ui/app.js?v="), "{html}");
        assert!(html.contains("href=\"/admin/ui/app.css?v="), "{html}");
        // CSP forbids inline script and style: the shell must not need them.
        assert!(!html.contains("<style"), "inline <style> in the shell");
        assert!(!html.contains(" style="), "inline style attribute in the shell");
        assert!(!html.contains("<script>"), "inline <script> in the shell");
        for handler in ["onclick=", "onload=", "onsubmit=", "onerror=", "javascript:"] {
            assert!(!html.contains(handler), "inline handler {handler} in the shell");
        }
    }

    #[test]
    fn every_file_carries_the_policy_and_its_type() {
        for (asset, ty) in [(Asset::Index, "text/html"), (Asset::Script, "text/javascript"), (Asset::Style, "text/css")] {
            let response = serve(asset, false);
            assert_eq!(response.status, 200);
            assert!(response.header("content-type").unwrap().starts_with(ty));
            assert_eq!(response.header("content-security-policy"), Some(CONTENT_SECURITY_POLICY));
            assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
            assert!(matches!(response.body, Body::Bytes(ref b) if !b.is_empty()));
            assert!(matches!(serve(asset, true).body, Body::Empty));
        }
        assert_eq!(serve(Asset::Index, false).header("cache-control"), Some("no-cache"));
    }
}
