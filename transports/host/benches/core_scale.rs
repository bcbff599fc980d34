//! The authenticator on its persistent store: makeCredential (discoverable) and getAssertion
//! (discovery and allowList) with 10 and with 100,000 discoverable credentials stored.
//!
//! The stores are filled with real credentials: the core registers them on an in-memory store
//! (fast), then every entry is copied into a `RedbStore` in large batches. Each measured
//! operation includes its fsynced commit (the global signature counter, or the new record).
//!
//! ```text
//! cargo bench -p fidelio-host --bench core_scale -- --warm-up-time 1 --measurement-time 5
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench setup: a failure should stop the bench"
)]

use std::hint::black_box;

use authenticator_core::cbor::{self, Value};
use authenticator_core::platform::{Store, Write};
use authenticator_core::testing::ScriptedPresence;
use authenticator_core::{Authenticator, Config, MemoryStore, block_on};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fidelio_host::{HostPlatform, RedbStore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Device<S> = Authenticator<HostPlatform<ChaCha20Rng, S, ScriptedPresence>>;

fn make_credential(rp_id: &str, user: &[u8]) -> Vec<u8> {
    let params = cbor::map(vec![
        (cbor::int(1), cbor::bytes(&[7; 32])),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text(rp_id))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(user)),
                (cbor::text("name"), cbor::text("user@example.com")),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("alg"), cbor::int(-7)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
        (
            cbor::int(7),
            cbor::map(vec![(cbor::text("rk"), Value::Bool(true))]),
        ),
    ]);
    let mut request = vec![0x01];
    cbor::encode(&params, &mut request);
    request
}

fn get_assertion(rp_id: &str, allow: Option<&[u8]>) -> Vec<u8> {
    let mut params = vec![
        (cbor::int(1), cbor::text(rp_id)),
        (cbor::int(2), cbor::bytes(&[9; 32])),
    ];
    if let Some(id) = allow {
        params.push((
            cbor::int(3),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("id"), cbor::bytes(id)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ));
    }
    let mut request = vec![0x02];
    cbor::encode(&cbor::map(params), &mut request);
    request
}

fn config() -> Config {
    let mut config = Config::security_key();
    config.max_discoverable_credentials = 200_000;
    config
}

fn ok(response: &[u8]) -> &[u8] {
    assert_eq!(
        response.first(),
        Some(&0),
        "CTAP error 0x{:02X}",
        response[0]
    );
    &response[1..]
}

/// Registers `count` credentials (one per RP) in memory; returns the store and the credential
/// ID of the RP `rp-0.example`.
fn filled(count: usize) -> (MemoryStore, Vec<u8>) {
    let mut device: Device<MemoryStore> = Authenticator::new(
        HostPlatform::new(
            ChaCha20Rng::seed_from_u64(1),
            MemoryStore::new(),
            ScriptedPresence::default(),
        ),
        config(),
    );
    let mut first_id = Vec::new();
    for i in 0..count {
        let response =
            block_on(device.process(&make_credential(&format!("rp-{i}.example"), b"user")));
        if i == 0 {
            let body = cbor::decode(ok(&response)).unwrap();
            let Value::Map(entries) = body else { panic!() };
            let auth_data = entries
                .iter()
                .find(|(k, _)| *k == cbor::int(2))
                .unwrap()
                .1
                .clone();
            let auth_data = cbor::as_bytes(&auth_data).unwrap().to_vec();
            first_id = auth_data[55..55 + 64].to_vec();
        }
    }
    (device.into_platform().store, first_id)
}

fn persistent(memory: &MemoryStore, dir: &std::path::Path) -> RedbStore {
    let mut store = RedbStore::open(dir.join("device.redb")).unwrap();
    let mut entries = Vec::new();
    memory
        .scan_prefix(b"", &mut |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    for chunk in entries.chunks(10_000) {
        let batch: Vec<Write<'_>> = chunk.iter().map(|(k, v)| Write::Put(k, v)).collect();
        store.commit(&batch).unwrap();
    }
    store
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_on_redb");
    group.sample_size(30);
    for count in [10usize, 100_000] {
        let started = std::time::Instant::now();
        let (memory, first_id) = filled(count);
        let dir = tempfile::tempdir().unwrap();
        let store = persistent(&memory, dir.path());
        drop(memory);
        eprintln!("filled {count} credentials in {:.1?}", started.elapsed());
        let mut device: Device<RedbStore> = Authenticator::new(
            HostPlatform::new(
                ChaCha20Rng::seed_from_u64(2),
                store,
                ScriptedPresence::default(),
            ),
            config(),
        );

        let discover = get_assertion("rp-0.example", None);
        group.bench_with_input(
            BenchmarkId::new("get_assertion_discover", count),
            &count,
            |b, _| b.iter(|| black_box(ok(&block_on(device.process(&discover))).len())),
        );
        let allow = get_assertion("rp-0.example", Some(&first_id));
        group.bench_with_input(
            BenchmarkId::new("get_assertion_allow_list", count),
            &count,
            |b, _| b.iter(|| black_box(ok(&block_on(device.process(&allow))).len())),
        );
        // Re-registers the same account at one RP: a full discoverable write (record, index,
        // sequence, count, removal of the replaced record) without growing the store.
        let register = make_credential("rp-1.example", b"user");
        group.bench_with_input(
            BenchmarkId::new("make_credential_rk", count),
            &count,
            |b, _| b.iter(|| black_box(ok(&block_on(device.process(&register))).len())),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
