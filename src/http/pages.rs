//! The dashboard people open in a browser: the files under `static/`, built into the binary so a
//! single executable serves it offline. Plain HTML, CSS and JavaScript modules, no build step.
//! The page talks to the hub only over the WebSocket at `/ws` (docs/websocket.md).

use actix_web::{HttpResponse, web};

use super::resource;

/// One embedded file: where it is served, its type, its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../static/", $file)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("/", HTML, "index.html"),
    asset!("/index.html", HTML, "index.html"),
    asset!("/style.css", CSS, "style.css"),
    asset!("/app.js", JS, "app.js"),
    asset!("/hub.js", JS, "hub.js"),
    asset!("/model.js", JS, "model.js"),
    asset!("/views.js", JS, "views.js"),
    asset!("/evolution.js", JS, "evolution.js"),
    asset!("/dom.js", JS, "dom.js"),
    asset!("/favicon.svg", "image/svg+xml", "favicon.svg"),
];

/// Scripts and styles only from this hub (no inline script, no `eval`), data only over this
/// hub's own WebSocket (`'self'` covers `ws:`/`wss:` to the same host), nothing framed or
/// posted elsewhere. Exports are downloaded from `blob:` URLs the page makes.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Registers every embedded file at its path (`GET` only; other methods get the JSON 405).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        cfg.service(resource(asset.path).route(web::get().to(move || serve(asset))));
    }
}

async fn serve(asset: &'static Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(("content-security-policy", CSP))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        // The files change only with the binary; revalidating is cheap on loopback.
        .insert_header(("cache-control", "no-cache"))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit(['"', '\'']).nth(1).unwrap_or("");
                let path = from.trim_start_matches('.');
                assert!(served.contains(&path), "{} imports {from}", asset.path);
            }
        }
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!index.contains("<script>"), "no inline scripts");
        assert!(!index.contains("style="), "no inline styles");
    }
}
