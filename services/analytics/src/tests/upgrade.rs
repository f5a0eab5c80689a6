//! A database made before analytics kept its events through the platform moves them over when
//! it is migrated: every event it stored is kept, whole, and a rebuild makes the same figures.

use kassa_contracts::{EventContext, events::OrderCancelled};
use kassa_platform::{
    db::sql,
    inbox,
    migrate::{self, Migrations, PLATFORM},
    testing::Throwaway,
};
use uuid::Uuid;

async fn stored_events_become_kept_events(t: Throwaway) {
    // The schema as it was: the platform's first three migrations, analytics' first two.
    let platform_then = Migrations {
        component: PLATFORM.component,
        steps: &PLATFORM.steps[..3],
    };
    let analytics_then = Migrations {
        component: kassa_analytics::MIGRATIONS.component,
        steps: &kassa_analytics::MIGRATIONS.steps[..2],
    };
    migrate::run(&t.db, &[&platform_then, &analytics_then])
        .await
        .unwrap();
    let mut events: Vec<_> = (0..3)
        .map(|_| {
            let order_id = Uuid::now_v7();
            kassa_contracts::Envelope::new(
                "orders",
                order_id,
                &OrderCancelled { order_id },
                &EventContext::new("upgrade"),
            )
        })
        .collect();
    events.sort_by_key(|e| e.id);
    for e in &events {
        sql("INSERT INTO stored_events (id, type, time, envelope) VALUES ($1, $2, $3, $4)")
            .bind(e.id)
            .bind(e.event_type.as_str())
            .bind(e.time)
            .bind(serde_json::to_string(e).unwrap())
            .execute(&t.db)
            .await
            .unwrap();
    }

    assert_eq!(
        migrate::run(&t.db, &[&PLATFORM, &kassa_analytics::MIGRATIONS])
            .await
            .unwrap(),
        2
    );
    let kept = inbox::kept(&t.db, kassa_analytics::NAME, None, 10)
        .await
        .unwrap();
    // Whole, in the order they were made.
    let kept: Vec<_> = kept.iter().map(|k| k.envelope().unwrap()).collect();
    assert_eq!(kept, events);
    assert!(
        sql("SELECT count(*) FROM stored_events")
            .fetch_one(&t.db)
            .await
            .is_err(),
        "the old table is gone"
    );
    let rebuilt = kassa_analytics::rebuild::rebuild(&t.db).await.unwrap();
    assert_eq!((rebuilt.events, rebuilt.unreadable), (3, 0));
    t.drop_now().await;
}

kassa_platform::on_both_databases!(stored_events_become_kept_events);
