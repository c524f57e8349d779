//! `GET /`: the page people open in a browser, built into the binary from `static/`.

use actix_web::HttpResponse;

const INDEX: &str = include_str!("../../static/index.html");

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page only talks to this hub.
        .insert_header((
            "content-security-policy",
            "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'",
        ))
        .body(INDEX)
}
