//! An in-memory bucket with S3's conditional-write semantics: ETags change
//! at every write, `Create` fails when the key exists, `Replace` when the
//! ETag moved on. Last-Modified comes from the same clock as the
//! coordinators', so a test can age a lease by moving the clock.

use crate::replica::Clock;
use crate::replica::bucket::{Bucket, BucketError, Listing, Object, Write};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Clone)]
struct Stored {
    object: Object,
    metadata: HashMap<String, String>,
}

pub struct MemoryBucket {
    objects: Mutex<BTreeMap<String, Stored>>,
    writes: Mutex<u64>,
    clock: Clock,
}

impl MemoryBucket {
    pub fn new(clock: Clock) -> MemoryBucket {
        MemoryBucket {
            objects: Default::default(),
            writes: Mutex::new(0),
            clock,
        }
    }

    /// Writes an object unconditionally, as another writer (the s3 target,
    /// a person) would.
    pub fn insert(&self, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) {
        let etag = self.next_etag();
        self.objects.lock().unwrap().insert(
            key.to_string(),
            Stored {
                object: Object {
                    bytes: bytes.to_vec(),
                    etag,
                    modified: Some((self.clock)()),
                },
                metadata: metadata
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    }

    /// The object's body as JSON, for assertions.
    pub fn json(&self, key: &str) -> Option<serde_json::Value> {
        let objects = self.objects.lock().unwrap();
        serde_json::from_slice(&objects.get(key)?.object.bytes).ok()
    }

    fn next_etag(&self) -> String {
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        format!("\"{:032x}\"", *writes)
    }
}

#[async_trait::async_trait]
impl Bucket for MemoryBucket {
    fn name(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, BucketError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|s| s.object.clone()))
    }

    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Write<'_>,
    ) -> Result<Option<String>, BucketError> {
        let mut objects = self.objects.lock().unwrap();
        let holds = match (condition, objects.get(key)) {
            (Write::Create, existing) => existing.is_none(),
            (Write::Replace(etag), Some(s)) => s.object.etag == etag,
            (Write::Replace(_), None) => false,
        };
        if !holds {
            return Ok(None);
        }
        let etag = self.next_etag();
        objects.insert(
            key.to_string(),
            Stored {
                object: Object {
                    bytes: body,
                    etag: etag.clone(),
                    modified: Some((self.clock)()),
                },
                metadata: HashMap::new(),
            },
        );
        Ok(Some(etag))
    }

    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, BucketError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|s| s.metadata.clone()))
    }

    async fn list(&self, prefixes: &[String]) -> Result<Listing, BucketError> {
        let objects = self.objects.lock().unwrap();
        let mut listing = Listing::default();
        for prefix in prefixes {
            listing.requests += 1;
            for (key, s) in objects.range(prefix.clone()..) {
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                listing.objects.insert(key.clone(), s.object.etag.clone());
            }
        }
        Ok(listing)
    }
}
