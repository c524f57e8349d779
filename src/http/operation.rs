//! The generic REST adapter: a route is a method, a path and an operation type. Path
//! parameters, then the query string (GET) or the JSON body (POST), are merged into one object
//! and parsed as the operation's request, exactly as the MCP tool parses its arguments.
//!
//! Query strings carry only text, so each value is read as the type the request's schema gives
//! its field (`limit=5` is a number, `unreadOnly=true` a boolean, `since=7` an event id); a value
//! that is not of that type reaches the parser as text and is refused naming the field.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Route, web};
use serde_json::{Map, Value};

use super::auth::Auth;
use super::json::JsonBody;
use crate::actors::Hub;
use crate::api::{Call, Operation};
use crate::error::HubError;

/// `GET`: path parameters and the query string.
pub fn get<O: Operation>() -> Route {
    web::get().to(|req, hub, auth| query::<O>(req, hub, auth, None))
}

/// `GET` of a grouped operation with its `action` set by the route (`/mcp/collaborate/locks`
/// is `lock` with `action: list`).
pub fn get_action<O: Operation>(action: &'static str) -> Route {
    web::get().to(move |req, hub, auth| query::<O>(req, hub, auth, Some(action)))
}

/// `POST` answered 200: path parameters and the JSON body.
pub fn post<O: Operation>() -> Route {
    web::post()
        .to(|req, hub, auth, body| with_body::<O>(req, hub, auth, body, None, StatusCode::OK))
}

/// `POST` of a grouped operation with its `action` set by the route.
pub fn post_action<O: Operation>(action: &'static str) -> Route {
    web::post().to(move |req, hub, auth, body| {
        with_body::<O>(req, hub, auth, body, Some(action), StatusCode::OK)
    })
}

/// `POST` answered 201 Created.
pub fn create<O: Operation>() -> Route {
    web::post()
        .to(|req, hub, auth, body| with_body::<O>(req, hub, auth, body, None, StatusCode::CREATED))
}

async fn query<O: Operation>(
    req: HttpRequest,
    hub: web::Data<actix::Addr<Hub>>,
    Auth(credential): Auth,
    action: Option<&'static str>,
) -> Result<HttpResponse, HubError> {
    let mut fields = Map::new();
    let schema = schema_of::<O>();
    for (key, text) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let value = typed_text(&schema, &key, text.into_owned());
        if fields.insert(key.clone().into_owned(), value).is_some() {
            return Err(HubError::invalid(
                key.into_owned(),
                "given twice in the query string",
            ));
        }
    }
    with_action(&mut fields, action)?;
    let request = with_path(&req, &schema, fields)?;
    answer::<O>(&req, request, hub, credential, StatusCode::OK).await
}

async fn with_body<O: Operation>(
    req: HttpRequest,
    hub: web::Data<actix::Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
    action: Option<&'static str>,
    status: StatusCode,
) -> Result<HttpResponse, HubError> {
    if !req.query_string().is_empty() {
        return Err(HubError::invalid(
            "query",
            "this endpoint reads its arguments from the JSON body; move them out of the query string",
        ));
    }
    let Value::Object(mut fields) = body else {
        return Err(HubError::Invalid {
            code: "invalid_json",
            message: "the body must be a JSON object".into(),
            field: None,
        });
    };
    with_action(&mut fields, action)?;
    let request = with_path(&req, &schema_of::<O>(), fields)?;
    answer::<O>(&req, request, hub, credential, status).await
}

/// The route's action; the request may not name another.
fn with_action(
    fields: &mut Map<String, Value>,
    action: Option<&'static str>,
) -> Result<(), HubError> {
    if let Some(action) = action
        && let Some(given) = fields.insert("action".into(), Value::from(action))
        && given != action
    {
        return Err(HubError::invalid(
            "action",
            format!("this endpoint does {action}; drop action (or use the endpoint for {given})"),
        ));
    }
    Ok(())
}

async fn answer<O: Operation>(
    req: &HttpRequest,
    request: Value,
    hub: web::Data<actix::Addr<Hub>>,
    credential: crate::domain::auth::Credential,
    status: StatusCode,
) -> Result<HttpResponse, HubError> {
    let request: O = crate::api::parse(request)?;
    // A write's key (`api::REQUEST_KEY`); on a GET, a read of messages, which marks them read
    // and so is answered again from its key.
    let request_key = std::rc::Rc::new(std::cell::Cell::new(crate::api::request_key(
        req.headers(),
    )?));
    let call = Call {
        hub: hub.get_ref().clone(),
        credential,
        seat: None,
        critical: None,
        request_key,
    };
    let out = request.run(call).await?;
    Ok(HttpResponse::build(status).json(out))
}

/// Adds the path parameters (`/mcp/context/diff/{aiId}/{since}`) to the request's fields; one
/// given in both places must agree.
fn with_path(
    req: &HttpRequest,
    schema: &Value,
    mut fields: Map<String, Value>,
) -> Result<Value, HubError> {
    for (name, text) in req.match_info().iter() {
        let value = typed_text(schema, name, text.to_owned());
        match fields.get(name) {
            Some(given) if given != &value && given != &Value::String(text.to_owned()) => {
                return Err(HubError::invalid(
                    name,
                    format!("{name} is {text:?} in the path and {given} in the request"),
                ));
            }
            _ => {
                fields.insert(name.to_owned(), value);
            }
        }
    }
    Ok(Value::Object(fields))
}

/// A text value read as the type the schema gives `field`, when it is one.
fn typed_text(schema: &Value, field: &str, text: String) -> Value {
    let types: Vec<&str> = match &schema["properties"][field]["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        // Not in the schema: an alias (`id` for `taskId`) or a field the parser will refuse.
        // Numbers and booleans are read as such, so that an alias of one works.
        _ if schema["properties"].get(field).is_none() => vec!["integer", "boolean"],
        _ => Vec::new(),
    };
    let has = |t: &str| types.contains(&t);
    if has("integer")
        && let Ok(n) = text.parse::<i64>()
    {
        return Value::from(n);
    }
    if has("number")
        && let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    if has("boolean") && (text == "true" || text == "false") {
        return Value::Bool(text == "true");
    }
    Value::String(text)
}

/// The request's JSON Schema, generated once per type. Fields hidden from the MCP schema
/// (`sessionId`, `aiId`) are text anyway.
fn schema_of<O: Operation>() -> Arc<Value> {
    static SCHEMAS: OnceLock<Mutex<HashMap<TypeId, Arc<Value>>>> = OnceLock::new();
    let mut schemas = SCHEMAS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    schemas
        .entry(TypeId::of::<O>())
        .or_insert_with(|| Arc::new(schemars::schema_for!(O).to_value()))
        .clone()
}
