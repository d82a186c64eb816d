//! The browser dashboard, embedded in the binary: `GET /` and its static
//! assets (plain ES modules and CSS from `crates/gateway/dashboard/`, and the
//! JS client from `clients/js/src/`), served
//! from memory so `wsring dev` and `wsring gateway` need no Node toolchain
//! and no files next to the binary.
//!
//! Assets are served with `Cache-Control: no-cache` (revalidate every time):
//! they are tiny, and a rebuilt binary must never be paired with a stale
//! module from the browser cache, since the modules import each other.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../dashboard/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything the dashboard loads. `index.html` refers to these paths.
const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/colors.js", "colors.js", JS),
    asset!("/controls.js", "controls.js", JS),
    asset!("/dom.js", "dom.js", JS),
    asset!("/events.js", "events.js", JS),
    asset!("/feed.js", "feed.js", JS),
    asset!("/key.js", "key.js", JS),
    asset!("/nodes.js", "nodes.js", JS),
    asset!("/ring-panel.js", "ring-panel.js", JS),
    asset!("/ring.js", "ring.js", JS),
    asset!("/simulator.js", "simulator.js", JS),
    asset!("/state.js", "state.js", JS),
    // The JS client is the npm package's source file, served as is: one copy
    // for applications and for the simulator, which imports it.
    Asset {
        path: "/wsring-client.js",
        content_type: JS,
        body: include_bytes!("../../../clients/js/src/wsring-client.js"),
    },
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
    // Browsers ask for /favicon.ico on pages without an icon link (the JSON
    // API pages): the same SVG spares them a 404 in the console.
    asset!("/favicon.ico", "favicon.svg", "image/svg+xml"),
];

/// The dashboard's routes. Generic over the router state because no handler
/// reads it (the gateway merges this into its `Router<Arc<Gateway>>`).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Asset) -> &'static str {
        std::str::from_utf8(a.body).expect("assets are UTF-8")
    }

    #[test]
    fn every_module_import_is_embedded() {
        // A module imported but not embedded would 404 only in the browser.
        let paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in text(a).lines() {
                let line = line.trim();
                if !line.starts_with("import ") {
                    continue;
                }
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let path = spec.trim_start_matches('.');
                assert!(
                    paths.contains(&path),
                    "{} imports {spec}, which is not embedded",
                    a.path
                );
            }
        }
    }

    #[test]
    fn index_references_are_embedded() {
        let index = text(&ASSETS[0]);
        for needle in ["/style.css", "/app.js", "/favicon.svg"] {
            assert!(index.contains(needle), "index.html lacks {needle}");
        }
    }

    #[tokio::test]
    async fn serves_assets_with_content_types() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.expect("serve");
        });
        let http = wsring_http::tls::ClientTls::new(None)
            .and_then(|t| t.http_client(std::time::Duration::from_secs(10)))
            .expect("client");
        for a in ASSETS {
            let resp = http
                .get(format!("http://{addr}{}", a.path))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{}", a.path);
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                a.content_type,
                "{}",
                a.path
            );
            assert_eq!(resp.bytes().await.expect("body").as_ref(), a.body);
        }
        server.abort();
    }
}
