//! `kassa dlq list` and `kassa dlq redrive`: the messages consumers gave up on, wherever the
//! infrastructure keeps them (a table in each embedded database, a queue per consumer in RabbitMQ,
//! the `<topic>-dlq` topics of Kafka).

use kassa_platform::{
    bus::{DeadLetter, memory, rabbit},
    service::Service,
};

use crate::{
    app::open_database,
    settings::{Broker, Infrastructure, Settings},
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
        Infrastructure::Distributed {
            broker: Broker::RabbitMq { url },
            ..
        } => {
            let names: Vec<&str> = consumers.iter().map(|s| s.name).collect();
            Ok(rabbit::list_dead_letters(url, &settings.namespace, &names).await?)
        }
        Infrastructure::Distributed {
            broker: Broker::Kafka(kafka),
            ..
        } => list_on_kafka(kafka, settings, consumers).await,
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
            Infrastructure::Distributed {
                broker: Broker::RabbitMq { url },
                ..
            } => rabbit::redrive_dead_letters(url, &settings.namespace, service.name).await?,
            Infrastructure::Distributed {
                broker: Broker::Kafka(kafka),
                ..
            } => redrive_on_kafka(kafka, settings, service).await?,
        };
    }
    Ok(moved)
}

#[cfg(feature = "kafka")]
async fn list_on_kafka(
    kafka: &kassa_platform::bus::kafka::KafkaSettings,
    settings: &Settings,
    consumers: &[&'static Service],
) -> anyhow::Result<Vec<DeadLetter>> {
    let wanted: Vec<(&str, &[&str])> = consumers.iter().map(|s| (s.name, s.consumes)).collect();
    Ok(kassa_platform::bus::kafka::list_dead_letters(kafka, &settings.namespace, &wanted).await?)
}

#[cfg(feature = "kafka")]
async fn redrive_on_kafka(
    kafka: &kassa_platform::bus::kafka::KafkaSettings,
    settings: &Settings,
    service: &'static Service,
) -> anyhow::Result<usize> {
    Ok(kassa_platform::bus::kafka::redrive_dead_letters(
        kafka,
        &settings.namespace,
        service.name,
        service.consumes,
    )
    .await?)
}

#[cfg(not(feature = "kafka"))]
async fn list_on_kafka(
    _: &kassa_platform::bus::kafka::KafkaSettings,
    _: &Settings,
    _: &[&'static Service],
) -> anyhow::Result<Vec<DeadLetter>> {
    Err(crate::app::without_kafka())
}

#[cfg(not(feature = "kafka"))]
async fn redrive_on_kafka(
    _: &kassa_platform::bus::kafka::KafkaSettings,
    _: &Settings,
    _: &'static Service,
) -> anyhow::Result<usize> {
    Err(crate::app::without_kafka())
}
