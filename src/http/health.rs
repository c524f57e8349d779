//! `GET /healthz`: liveness and readiness in one. 200 once migrations ran and the actors are up
//! and the database answers; 503 while it does not.

use actix::Addr;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::actors::Hub;
use crate::actors::hub::Health;

pub async fn healthz(hub: web::Data<Addr<Hub>>) -> HttpResponse {
    let (backend, probe) = match hub.send(Health).await {
        Ok(answer) => answer,
        Err(e) => ("unknown", Err(e.into())),
    };
    let body = |status: &str| json!({ "status": status, "backend": backend, "version": env!("CARGO_PKG_VERSION") });
    match probe {
        Ok(()) => HttpResponse::Ok().json(body("ok")),
        Err(e) => {
            log::warn!("health check failed: {e}");
            HttpResponse::ServiceUnavailable().json(body("unavailable"))
        }
    }
}
