//! The in-memory audit log stays useful under a flood of events anyone can
//! cause.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use authio_mcp::audit::{AuditEvent, AuditKind};
use authio_mcp::project::ProjectId;
use authio_mcp::store::AuditSink;
use authio_mcp::store::memory::MemoryAuditLog;
use time::macros::datetime;

fn failure(p: &ProjectId, n: usize) -> AuditEvent {
    AuditEvent::new(
        p.clone(),
        datetime!(2026-11-26 12:00 UTC),
        AuditKind::CimdFetchFailed {
            client_id: format!("https://bogus.example/{n}"),
            reason: "fetch_failed".into(),
            http_status: None,
            detail: None,
        },
    )
}

#[tokio::test]
async fn cimd_failure_floods_do_not_evict_other_events() {
    let log = MemoryAuditLog::with_capacity(100);
    let a = ProjectId::new("proj_a").unwrap();
    let b = ProjectId::new("proj_b").unwrap();
    let reuse = AuditEvent::new(
        a.clone(),
        datetime!(2026-11-26 12:00 UTC),
        AuditKind::AuthorizationCodeReuseDetected {
            client_id: "client_x".into(),
            grant_id: "grant_y".into(),
        },
    );
    log.record(reuse.clone()).await;
    for n in 0..10_000 {
        log.record(failure(&a, n)).await;
        log.record(failure(&b, n)).await;
    }
    let recent = log.recent(&a, 1000);
    assert_eq!(recent.len(), 101, "100 failures kept, plus the reuse event");
    assert_eq!(recent[0], reuse, "oldest first, and still there");
    assert!(recent[1..].iter().all(|e| e.name() == "oauth_client.cimd_fetch_failed"));
    assert!(
        log.recent(&b, 1000).iter().all(|e| e.project_id == b),
        "projects are separate"
    );
    assert_eq!(log.recent(&a, 5).len(), 5);
    assert_eq!(log.all().len(), 201);
}
