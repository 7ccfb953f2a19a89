use super::rules::*;
use super::*;

#[test]
fn route53_escapes_are_read_back() {
    assert_eq!(route53_name("\\052.Example.com."), "*.example.com");
    assert_eq!(
        route53_name("_acme-challenge.a.test."),
        "_acme-challenge.a.test"
    );
    assert_eq!(route53_name("a\\"), "a\\");
}

fn txt(action: ChangeAction, n: usize, len: usize) -> Change {
    let records: Vec<ResourceRecord> = (0..n)
        .map(|_| {
            ResourceRecord::builder()
                .value("x".repeat(len))
                .build()
                .unwrap()
        })
        .collect();
    let set = ResourceRecordSet::builder()
        .name("_acme-challenge.a.test.")
        .r#type(RrType::Txt)
        .ttl(60)
        .set_resource_records(Some(records))
        .build()
        .unwrap();
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .unwrap()
}

#[test]
fn batches_stay_inside_route53s_limits() {
    // 600 creates of one 45-character value: 27,000 characters fit in
    // one request; 800 do not (36,000).
    let one = |n| (0..n).map(|_| txt(ChangeAction::Create, 1, 45)).collect();
    assert_eq!(chunks(one(600)).len(), 1);
    let split = chunks(one(800));
    assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [711, 89]);
    // UPSERTs count twice: 400 of them are 800 records and 36,000
    // characters, split by characters.
    let upserts: Vec<Change> = (0..400).map(|_| txt(ChangeAction::Upsert, 1, 45)).collect();
    assert!(
        chunks(upserts)
            .iter()
            .all(|c| c.len() * 2 * 45 <= BATCH_CHARS)
    );
    // Short values: the record count binds.
    let short: Vec<Change> = (0..1500).map(|_| txt(ChangeAction::Create, 1, 3)).collect();
    assert_eq!(
        chunks(short).iter().map(Vec::len).collect::<Vec<_>>(),
        [1000, 500]
    );
    assert!(chunks(Vec::new()).is_empty());
}

#[test]
fn a_slow_route53_is_waited_for_longer_batches() {
    assert_eq!(batch_window(Duration::ZERO), (BATCH_IDLE, BATCH_MAX));
    assert_eq!(
        batch_window(Duration::from_secs(20)),
        (Duration::from_millis(500), Duration::from_secs(2))
    );
    assert_eq!(
        batch_window(Duration::from_secs(60)),
        (BATCH_IDLE_MOST, BATCH_MAX_MOST)
    );
}

#[test]
fn removals_are_gathered_longer_than_presents() {
    assert_eq!(cleanup_window(Duration::ZERO), (BATCH_IDLE * 2, BATCH_MAX));
    assert_eq!(
        cleanup_window(Duration::from_secs(20)),
        (Duration::from_secs(1), Duration::from_millis(2500))
    );
    assert_eq!(
        cleanup_window(Duration::from_secs(120)),
        (BATCH_IDLE_MOST * 2, CLEANUP_MAX_MOST)
    );
}
