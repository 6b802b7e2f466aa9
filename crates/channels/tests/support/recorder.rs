//! A recording HTTP server for provider tests: every request is kept (method, path, headers,
//! body) and answered from a list of canned answers, taken in order, the last one repeating.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, &'static str)>, String);

/// Canned answers, taken in order; the last one repeats.
#[derive(Clone, Default)]
pub struct Server {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

async fn record(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server.seen.lock().unwrap().push(Seen { method, path: uri.path().to_owned(), headers, body });
    let (status, extra, body) = {
        let mut answers = server.answers.lock().unwrap();
        if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub async fn serve(answers: Vec<Answer>) -> (String, Server) {
    let server = Server { seen: Default::default(), answers: Arc::new(Mutex::new(answers)) };
    let app = Router::new().fallback(record).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, server)
}
