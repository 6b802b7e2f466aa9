//! Two stores on one data directory, as a server and a CLI command are: each sees the other's
//! commits, including identity changes the writer's cache knew differently.

use serde_json::json;
use whisperer_core::identity::IdKind;
use whisperer_core::{ApiKey, EventType, KeyKind, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_store::{NewKey, Store};
use whisperer_store_sqlite::SqliteStore;

fn event(ws: &WorkspaceId, id: &str, user: &str, previous: Option<&str>) -> NewEvent {
    NewEvent {
        workspace_id: ws.clone(),
        message_id: id.into(),
        event_type: if previous.is_some() { EventType::Alias } else { EventType::Track },
        name: None,
        user_id: Some(user.into()),
        anonymous_id: None,
        previous_id: previous.map(Into::into),
        timestamp: Millis(1_700_000_000_000),
        received_at: Millis(1_700_000_000_000),
        raw: json!({"type": "track"}).to_string(),
        enrichment: "{}".into(),
    }
}

#[tokio::test]
async fn a_merge_by_another_process_reaches_the_writers_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = SqliteStore::open(dir.path()).unwrap();
    let cli = SqliteStore::open(dir.path()).unwrap();
    let ws = Workspace { id: WorkspaceId::generate(), name: "w".into(), created_at: Millis(0) };
    server.create_workspace(&ws, &[NewKey::of(&ApiKey::generate(KeyKind::Write), Millis(0))]).await.unwrap();

    // The server learns (and caches) old-id's person.
    server.append(vec![event(&ws.id, "1", "old-id", None)], Millis(0)).await.unwrap();
    server.append(vec![event(&ws.id, "2", "old-id", None)], Millis(0)).await.unwrap();
    // Another process merges old-id into new-id.
    cli.append(vec![event(&ws.id, "3", "new-id", Some("old-id"))], Millis(0)).await.unwrap();
    // The server's next event for old-id must land on the merged person.
    server.append(vec![event(&ws.id, "4", "old-id", None)], Millis(0)).await.unwrap();

    let person = server.find_person(&ws.id, IdKind::User, "new-id").await.unwrap().unwrap();
    let events = server.person_events(&ws.id, person.id, None, 10).await.unwrap();
    assert_eq!(events.len(), 4, "every event belongs to the merged person");
    assert_eq!(server.workspace_stats(&ws.id).await.unwrap().persons, 1);
}
