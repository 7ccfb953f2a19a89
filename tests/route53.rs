//! The Route53 provider against moto: values are merged into what is there,
//! and cleanup removes only what certkeeper added.

mod support;

use certkeeper::dns::route53::Route53;
use certkeeper::dns::{DnsProvider, TxtRecord, ZoneHint};
use std::sync::Arc;

async fn txt_values(moto: &support::Moto, zone: &str, name: &str) -> Vec<String> {
    let out = moto
        .route53()
        .await
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    let mut values: Vec<String> = out
        .resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name && s.r#type().as_str() == "TXT")
        .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
        .collect();
    values.sort();
    values
}

fn rec(name: &str, value: &str) -> TxtRecord {
    TxtRecord {
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_and_removes_only_its_own_values() {
    let moto = support::Moto::start();
    let zone = moto.create_zone("example.test").await;
    moto.create_zone("sub.example.test").await;
    let name = "_acme-challenge.www.example.test";

    // Another client's value is already there.
    let r53 = moto.route53().await;
    let foreign = aws_sdk_route53::types::ResourceRecordSet::builder()
        .name(format!("{name}."))
        .r#type(aws_sdk_route53::types::RrType::Txt)
        .ttl(60)
        .resource_records(
            aws_sdk_route53::types::ResourceRecord::builder()
                .value("\"other-client\"")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(
            aws_sdk_route53::types::ChangeBatch::builder()
                .changes(
                    aws_sdk_route53::types::Change::builder()
                        .action(aws_sdk_route53::types::ChangeAction::Upsert)
                        .resource_record_set(foreign)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let provider = Arc::new(Route53::new(r53.clone()));
    let hint = ZoneHint::default();
    // Two orders presenting on the same name at once (a wildcard and its
    // apex in different certificates) must not drop each other's value.
    let (a, b) = (provider.clone(), provider.clone());
    let (ra, rb) = tokio::join!(
        async move {
            a.present(&ZoneHint::default(), &[rec(name, "value-a")])
                .await
        },
        async move {
            b.present(&ZoneHint::default(), &[rec(name, "value-b")])
                .await
        },
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        txt_values(&moto, &zone, name).await,
        ["\"other-client\"", "\"value-a\"", "\"value-b\""]
    );

    provider
        .cleanup(&hint, &[rec(name, "value-a")])
        .await
        .unwrap();
    assert_eq!(
        txt_values(&moto, &zone, name).await,
        ["\"other-client\"", "\"value-b\""]
    );
    provider
        .cleanup(&hint, &[rec(name, "value-b")])
        .await
        .unwrap();
    assert_eq!(txt_values(&moto, &zone, name).await, ["\"other-client\""]);
    // Cleaning up again is a no-op, not an error.
    provider
        .cleanup(&hint, &[rec(name, "value-b")])
        .await
        .unwrap();

    // Longest suffix wins: a name under sub.example.test goes to that zone.
    let sub_zone = provider
        .zone_for(&hint, "_acme-challenge.x.sub.example.test")
        .await
        .unwrap();
    assert_ne!(sub_zone, zone);
    assert!(matches!(
        provider
            .zone_for(&hint, "_acme-challenge.www.nowhere.test")
            .await,
        Err(certkeeper::dns::DnsError::NoZone { .. })
    ));
    // The last value of a name is removed with a DELETE of the exact set.
    provider
        .present(&hint, &[rec("_acme-challenge.solo.example.test", "v")])
        .await
        .unwrap();
    provider
        .cleanup(&hint, &[rec("_acme-challenge.solo.example.test", "v")])
        .await
        .unwrap();
    assert!(
        txt_values(&moto, &zone, "_acme-challenge.solo.example.test")
            .await
            .is_empty()
    );
    assert!(provider.api_calls() > 0);
}
