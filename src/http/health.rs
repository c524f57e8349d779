//! `GET /healthz`: liveness and readiness in one. 200 once migrations ran and the actors are up
//! and the database answers; 503 while it does not.

use actix_web::{HttpResponse, web};
use diesel::RunQueryDsl;
use serde_json::json;

use crate::store::Store;

pub async fn healthz(store: web::Data<Store>) -> HttpResponse {
    let probe = store
        .read(|c| {
            diesel::sql_query("SELECT 1").execute(c)?;
            Ok(())
        })
        .await;
    let body = |status: &str| json!({ "status": status, "backend": store.backend(), "version": env!("CARGO_PKG_VERSION") });
    match probe {
        Ok(()) => HttpResponse::Ok().json(body("ok")),
        Err(e) => {
            log::warn!("health check failed: {e}");
            HttpResponse::ServiceUnavailable().json(body("unavailable"))
        }
    }
}
