//! The same binary on PostgreSQL: CLI and server share the database, as they share a data dir.

use crate::helpers::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ingest_read_and_export_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let store = ["--database-url", url.as_str()];
    let ws = create_workspace_in(&store, "pg");
    let server = ServerProcess::start_on(&store);
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "visitor", "name": "Home", "messageId": "pg-1"},
        {"type": "identify", "userId": "pg-user", "anonymousId": "visitor", "traits": {"plan": "pro"}, "messageId": "pg-2"},
        {"type": "track", "userId": "pg-user", "event": "Order Completed", "properties": {"revenue": 9.5},
         "timestamp": "2019-06-01T00:00:00Z", "messageId": "pg-3"},
        {"type": "track", "userId": "pg-user", "event": "Order Completed", "messageId": "pg-3"},
    ]});
    let (status, answer) = server.post_json("/v1/batch", &ws.write_key, &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["accepted"].as_u64(), answer["duplicates"].as_u64()), (Some(3), Some(1)), "{answer}");
    let user = server.get_json("/v1/users/pg-user", &ws.secret_key).await;
    assert_eq!(user["eventCount"], 3, "{user}");
    assert_eq!(user["traits"]["plan"], "pro");
    assert_eq!(user["firstSeen"], "2019-06-01T00:00:00.000Z");
    let ready = server.get_json("/readyz", &ws.secret_key).await;
    assert_eq!(ready["storage"], "postgres");
    let exported = export_from(&store, &ws.id);
    let ids: Vec<&str> = exported.iter().map(|e| e["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pg-1", "pg-2", "pg-3"]);
}
