use super::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A well-behaved CA: the harness itself works end to end.
#[test]
fn a_well_behaved_ca_issues() {
    let out = hostile_ca(&[]);
    assert!(out.issued.is_ok(), "{out:?}");
    assert_eq!(out.txt_written, 2);
    let retry = out.ari_retry.expect("ARI answered");
    assert!(retry > Duration::from_secs(21_000), "{retry:?}");
}

/// Found by this harness: an ARI answer with `Retry-After:
/// 18446744073709551615` made instant-acme overflow the system clock
/// (a panic) until the polite client capped it. Requests: directory,
/// nonce, account, then ARI, bent by byte 250.
#[test]
fn a_huge_retry_after_on_ari_does_not_panic() {
    let out = hostile_ca(&[0, 0, 0, 250, 1, 1, 255]);
    assert!(out.issued.is_ok(), "{out:?}");
}

/// Counts the newOrder requests in flight; each takes 100 ms.
struct SlowNewOrders {
    ca: Arc<HostileCa>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpClient for SlowNewOrders {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        use std::sync::atomic::Ordering::SeqCst;
        if req.method() != http::Method::POST || req.uri().path() != "/order" {
            return self.ca.request(req);
        }
        let (ca, in_flight, most) = (self.ca.clone(), self.in_flight.clone(), self.most.clone());
        Box::pin(async move {
            let now = in_flight.fetch_add(1, SeqCst) + 1;
            most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let answer = ca.request(req).await;
            in_flight.fetch_sub(1, SeqCst);
            answer
        })
    }
}

/// The most newOrder requests in flight at once while four orders run
/// together against one CA with `limit` permits.
async fn new_orders_at_once(limit: usize) -> usize {
    let ca = ca_from(&[]);
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow = Arc::new(SlowNewOrders {
        ca,
        in_flight: Default::default(),
        most: most.clone(),
    });
    let manners = Manners::new("slow", 1_000.0);
    let (account, _) = new_account(Box::new(PoliteClient::over(slow, manners)))
        .await
        .expect("account");
    let issuer = Issuer::over(
        "slow",
        account,
        &format!("{BASE}/dir"),
        Duration::from_secs(60),
        limit,
    );
    let specs: Vec<crate::config::CertificateSpec> = (0..4)
        .map(|i| {
            serde_json::from_value(
                json!({"name": format!("c{i}"), "domains": [format!("c{i}.example.test")]}),
            )
            .expect("spec")
        })
        .collect();
    let (_, dns) = memory_dns(&specs[0].dns.provider);
    let cancel = tokio_util::sync::CancellationToken::new();
    let issue = |i: usize| issuer.issue(&specs[i], None, None, None, &dns, &cancel);
    // However the shared one-order CA answers them, every order asks.
    let _ = tokio::join!(issue(0), issue(1), issue(2), issue(3));
    most.load(std::sync::atomic::Ordering::SeqCst)
}

/// `new_orders_in_flight`: orders run in parallel, their newOrder
/// requests one at a time (Pebble 2.4 deadlocks on concurrent ones).
#[tokio::test(start_paused = true)]
async fn new_orders_go_to_the_ca_one_at_a_time() {
    assert_eq!(new_orders_at_once(1).await, 1);
    assert_eq!(new_orders_at_once(4).await, 4);
}

/// Seeded, bounded: 400 conversations with a CA bending its answers.
/// Whatever it says, nothing panics, every order ends and every TXT
/// record is removed (asserted inside `hostile_ca`).
#[test]
fn any_ca_answers_end_the_order_cleanly() {
    let mut rng = StdRng::seed_from_u64(8555);
    let (mut issued, mut failed) = (0, 0);
    for _ in 0..400 {
        let len = rng.random_range(0..160);
        // Mostly well-behaved bytes with bursts of hostility, so the
        // conversations reach every step of the order.
        let data: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.7) {
                    rng.random_range(0..150)
                } else {
                    rng.random()
                }
            })
            .collect();
        match hostile_ca(&data).issued {
            Ok(()) => issued += 1,
            Err(_) => failed += 1,
        }
    }
    // Both outcomes are explored, not just one.
    assert!(
        issued > 20 && failed > 20,
        "{issued} issued, {failed} failed"
    );
}
