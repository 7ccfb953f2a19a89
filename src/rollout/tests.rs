use super::*;
use time::macros::datetime;

fn iam(name: &str) -> CertCopy {
    CertCopy {
        arn: format!("arn:aws:iam::123456789012:server-certificate/cloudfront/web/{name}"),
        iam_id: Some(format!("ASCA{}", name.to_uppercase())),
        region: None,
    }
}

fn copies() -> Copies {
    Copies {
        current: vec![iam("new")],
        previous: vec![iam("old"), iam("older")],
    }
}

#[test]
fn a_consumer_is_aligned_by_arn_or_iam_id() {
    let new = iam("new");
    assert_eq!(
        standing(std::slice::from_ref(&new.arn), &new),
        Standing::Aligned
    );
    assert_eq!(standing(&["ASCANEW".into()], &new), Standing::Aligned);
    assert_eq!(standing(&["ASCAOLD".into()], &new), Standing::Behind);
    // CloudFront's own certificate: nothing referenced.
    assert_eq!(standing(&[], &new), Standing::Behind);
    // An additional-certificate listener holding both.
    assert_eq!(
        standing(&[iam("old").arn, new.arn.clone()], &new),
        Standing::Aligned
    );
}

#[test]
fn previous_is_every_distribution_on_a_copy_of_this_certificate() {
    let all = vec![
        ("EOLD".to_string(), vec!["ASCAOLD".to_string()]),
        ("EOLDER".to_string(), vec!["ASCAOLDER".to_string()]),
        ("ENEW".to_string(), vec!["ASCANEW".to_string()]),
        ("EOTHER".to_string(), vec!["ASCASOMEONEELSE".to_string()]),
        ("EDEFAULT".to_string(), vec![]),
        (
            "EACM".to_string(),
            vec!["arn:aws:acm:us-east-1:123456789012:certificate/x".to_string()],
        ),
    ];
    assert_eq!(on_ours(&all, &copies()), vec!["EOLD", "EOLDER", "ENEW"]);
}

#[test]
fn a_halt_holds_for_retry_after_and_only_for_that_certificate() {
    let at = datetime!(2026-12-07 06:00 UTC);
    let halt = Halt {
        sha256: "AA".into(),
        at,
        step: "elb small:443".into(),
        reason: "mismatch".into(),
    };
    let day = std::time::Duration::from_secs(86400);
    assert_eq!(
        halted_until(Some(&halt), "AA", day, datetime!(2026-12-07 18:00 UTC)),
        Some(datetime!(2026-12-08 06:00 UTC))
    );
    assert_eq!(
        halted_until(Some(&halt), "AA", day, datetime!(2026-12-08 06:00 UTC)),
        None
    );
    // A newer certificate is rolled out at once.
    assert_eq!(
        halted_until(Some(&halt), "BB", day, datetime!(2026-12-07 07:00 UTC)),
        None
    );
    assert_eq!(halted_until(None, "AA", day, at), None);
}

#[test]
fn the_summary_is_aligned_only_when_every_consumer_is() {
    let read = vec![
        (
            "elb small:443".to_string(),
            vec!["a".to_string()],
            Standing::Aligned,
        ),
        (
            "cloudfront E1".to_string(),
            vec!["b".to_string()],
            Standing::Behind,
        ),
    ];
    let s = summary(&read, "not aligned".into());
    assert!(!s.aligned);
    assert_eq!(s.consumers.len(), 2);
    assert!(s.consumers[0].aligned && !s.consumers[1].aligned);
    assert!(summary(&read[..1], "aligned".into()).aligned);
    // No consumer read (the rollout stopped before): not aligned.
    assert!(!summary(&[], "x".into()).aligned);
}
