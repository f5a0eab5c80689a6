//! `kassa dlq list` and `kassa dlq redrive`: the messages consumers gave up on, wherever the
//! infrastructure keeps them (a table in each embedded database, a queue per consumer in RabbitMQ).

use kassa_platform::{
    bus::{DeadLetter, memory, rabbit},
    service::Service,
};

use crate::{
    app::open_database,
    settings::{Infrastructure, Settings},
};

/// Every dead letter of the given consumers.
pub async fn list(
    settings: &Settings,
    consumers: &[&'static Service],
) -> anyhow::Result<Vec<DeadLetter>> {
    match &settings.infrastructure {
        Infrastructure::Embedded { .. } => {
            let mut all = Vec::new();
            for service in consumers {
                let db = open_database(settings, service).await?;
                all.extend(memory::list_dead_letters(&db).await?);
                db.close().await;
            }
            Ok(all)
        }
        Infrastructure::Distributed { amqp_url, .. } => {
            let names: Vec<&str> = consumers.iter().map(|s| s.name).collect();
            Ok(rabbit::list_dead_letters(amqp_url, &settings.namespace, &names).await?)
        }
    }
}

/// Sends the dead letters of the given consumers back for a fresh set of attempts; returns how
/// many were sent.
pub async fn redrive(settings: &Settings, consumers: &[&'static Service]) -> anyhow::Result<usize> {
    let mut moved = 0;
    for service in consumers {
        moved += match &settings.infrastructure {
            Infrastructure::Embedded { .. } => {
                let db = open_database(settings, service).await?;
                let n = memory::redrive_dead_letters(&db).await?;
                db.close().await;
                n
            }
            Infrastructure::Distributed { amqp_url, .. } => {
                rabbit::redrive_dead_letters(amqp_url, &settings.namespace, service.name).await?
            }
        };
    }
    Ok(moved)
}
