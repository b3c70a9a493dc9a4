//! The operator console (`webui/`, a Vite + Svelte build) served from the binary: `GET /` is the
//! single page and `GET /assets/{file}` its hashed bundles. The console is static and talks to
//! the appliance only through `/api/v1`, so these routes carry no data and need no credentials.
//!
//! Embedding (rust-embed over `webui/dist`): release builds carry the files inside the binary;
//! debug builds read them from `webui/dist` on disk at request time, so `npm run build` is
//! picked up without recompiling. The folder may be missing (a machine without Node.js): the
//! crate still builds and `GET /` answers 503 with a page saying how to build the console.
//! Build the console *before* a release build; a release binary embeds what existed then.
//!
//! These routes are merged after the access check (`super::auth::authorize`) on purpose: they
//! are public static files, and keeping them out of [`super::routes::ROUTES`] keeps them out of
//! the OpenAPI document, the generated TypeScript types and the authorization matrix. They
//! never shadow an API path: they are `/`, `/index.html` and `/assets/…` only, GET/HEAD only,
//! and unknown paths fall through to the problem+json 404.

use std::borrow::Cow;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::AppState;
use super::problem::Problem;

#[derive(Embed)]
#[folder = "../webui/dist/"]
#[allow_missing = true]
struct Dist;

/// One file of the built console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Contents.
    pub data: Cow<'static, [u8]>,
    /// Media type guessed from the name.
    pub mime: String,
}

/// Looks up a built file by its path inside `webui/dist`.
pub fn embedded(path: &str) -> Option<Asset> {
    Dist::get(path).map(|f| Asset {
        mime: f.metadata.mimetype().to_owned(),
        data: f.data,
    })
}

/// Shown when the console has not been built (`webui/dist` missing).
pub const NOT_BUILT_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Septa: console not built</title></head><body style=\"font-family:sans-serif;max-width:44em;margin:3em auto\">\
<h1>The Septa console is not built into this binary</h1>\
<p>The REST API works (<a href=\"/api/v1/docs/\">API docs</a>, <a href=\"/api/v1/openapi.json\">OpenAPI</a>); \
only the web console's files are missing.</p>\
<p>Build them, then rebuild (release) or just reload (debug builds read <code>webui/dist</code> from disk):</p>\
<pre>bash webui/setup.sh        # Node.js, npm and Chromium from Debian, once\n\
cd webui &amp;&amp; npm ci &amp;&amp; npm run build\n\
cargo build --release</pre></body></html>";

/// The routes: `/`, `/index.html`, `/assets/{*file}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*file}", get(asset))
}

async fn index() -> Response {
    serve_index(embedded)
}

async fn asset(Path(file): Path<String>) -> Response {
    serve_asset(&file, embedded)
}

/// The page, or the "not built" page (503) when there is none.
pub fn serve_index(lookup: impl Fn(&str) -> Option<Asset>) -> Response {
    match lookup("index.html") {
        Some(a) => file_response(a, "no-cache"),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            NOT_BUILT_PAGE,
        )
            .into_response(),
    }
}

/// A hashed bundle under `assets/` (cached for a year: its name changes with its content).
pub fn serve_asset(file: &str, lookup: impl Fn(&str) -> Option<Asset>) -> Response {
    if file.split('/').any(|seg| seg.is_empty() || seg == "..") {
        return Problem::not_found("no such console file").into_response();
    }
    match lookup(&format!("assets/{file}")) {
        Some(a) => file_response(a, "public, max-age=31536000, immutable"),
        None => Problem::not_found("no such console file").into_response(),
    }
}

fn file_response(a: Asset, cache: &'static str) -> Response {
    let mut res = a.data.into_owned().into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&a.mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(path: &str) -> Option<Asset> {
        let (data, mime): (&'static [u8], &str) = match path {
            "index.html" => (b"<html>console</html>", "text/html"),
            "assets/index-abc.js" => (b"console.log(1)", "text/javascript"),
            _ => return None,
        };
        Some(Asset {
            data: Cow::Borrowed(data),
            mime: mime.into(),
        })
    }

    fn header(r: &Response, h: header::HeaderName) -> &str {
        r.headers().get(h).and_then(|v| v.to_str().ok()).unwrap()
    }

    #[test]
    fn index_and_assets_come_from_the_build() {
        let r = serve_index(fake);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "text/html");
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        let r = serve_asset("index-abc.js", fake);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "text/javascript");
        assert!(header(&r, header::CACHE_CONTROL).contains("immutable"));
        assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }

    #[test]
    fn a_missing_build_says_how_to_build_it() {
        let r = serve_index(|_| None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(header(&r, header::CONTENT_TYPE).starts_with("text/html"));
        assert!(NOT_BUILT_PAGE.contains("npm run build"));
    }

    #[test]
    fn unknown_or_escaping_asset_paths_are_404_problems() {
        for p in ["nope.js", "../index.html", "a//b.js", "x/../../Cargo.toml"] {
            let r = serve_asset(p, fake);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{p}");
            assert_eq!(
                header(&r, header::CONTENT_TYPE),
                "application/problem+json",
                "{p}"
            );
        }
    }

    #[test]
    fn console_paths_never_shadow_api_routes() {
        for r in super::super::ROUTES {
            assert!(
                r.path != "/" && r.path != "/index.html" && !r.path.starts_with("/assets/"),
                "{} is both an API route and a console path",
                r.path
            );
        }
    }

    #[test]
    fn the_embedded_build_is_consistent_when_present() {
        // Whatever `webui/dist` held at build time (or holds now, in debug builds): either no
        // index (the not-built page) or an index whose every referenced bundle is served.
        let Some(index) = embedded("index.html") else {
            assert_eq!(
                serve_index(embedded).status(),
                StatusCode::SERVICE_UNAVAILABLE
            );
            return;
        };
        let html = String::from_utf8_lossy(&index.data).into_owned();
        let refs: Vec<&str> = html
            .split("/assets/")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert!(!refs.is_empty(), "index.html references no bundle");
        for f in refs {
            assert_eq!(
                serve_asset(f, embedded).status(),
                StatusCode::OK,
                "{f} referenced by index.html but not served"
            );
        }
    }
}
