//! Does a ceremony cost the same with 10 discoverable credentials in the store as with
//! 100,000? (`Store` promises prefix scans that touch only the RP's own keys.)
//!
//! ```text
//! cargo bench -p authenticator-core --features testing --bench store_scale
//! FIDELIO_STORE_FILL=ceremony cargo bench … # fill through makeCredential instead (slower)
//! ```
//!
//! For each store size N, the `MemoryStore` holds N discoverable credentials spread over
//! N / 5 relying parties (`rp00000.example` …, five accounts each), plus the one credential the
//! benchmarks use at `example.com`. Measured through `Authenticator::process` with
//! `Config::security_key()` (capacity raised to 1,000,000):
//!
//! - `get_assertion_discoverable/N`: no allowList; discovers example.com's one credential.
//! - `get_assertion_allow_list/N`: the same (resident) credential named in the allowList, so
//!   its record is read from the store.
//! - `make_credential_rk/N`: ES256, rk, the same account each time (replaces it: reads the
//!   account index, the count and the sequence, writes five keys).
//!
//! The default fill writes the records directly with `Write::Put`, shaped as `storage.rs`
//! keys them (`c/`‖rpIdHash‖credentialId → `ResidentRecord`, `u/`‖rpIdHash‖userId →
//! credentialId, `m/sequence`, `m/resident-count`), with credential IDs sealed under the
//! store's master key: well under a second for 100,000. A check after the fill discovers a
//! filler credential through the core, so a change of layout in `storage.rs` fails loudly
//! here instead of measuring a store the core cannot read. `FIDELIO_STORE_FILL=ceremony`
//! fills through real makeCredential requests (EdDSA, to keep it fast) for a cross-check.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "benchmark harness"
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use authenticator_core::authenticator::rp_id_hash;
use authenticator_core::cbor::{self, Key, Members};
use authenticator_core::credential::{Algorithm, MasterKey, PrivateKey, SealedCredential};
use authenticator_core::platform::{Store, Write};
use authenticator_core::storage::{ResidentRecord, User};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, MemoryStore};
use common::{Case, ES256, get_assertion_request, make_credential_request, process};
use criterion::Criterion;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const RP_ID: &str = "example.com";
const USER_ID: &[u8] = &[0x42; 16];
const USERS_PER_RP: usize = 5;
const SIZES: [usize; 2] = [10, 100_000];
const MASTER_SECRET: [u8; 32] = [0x11; 32];

fn config() -> Config {
    let mut config = Config::security_key();
    config.max_discoverable_credentials = 1_000_000;
    config
}

fn filler_rp(index: usize) -> String {
    format!("rp{:05}.example", index / USERS_PER_RP)
}

fn filler_user(index: usize) -> Vec<u8> {
    let mut id = vec![0xA5; 16];
    id[..8].copy_from_slice(&(index as u64).to_be_bytes());
    id
}

/// Writes `count` discoverable credentials straight into a store, as `storage.rs` lays them
/// out.
fn fill_direct(count: usize) -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let master = MasterKey::new(&MASTER_SECRET);
    store
        .commit(&[Write::Put(b"m/master", &MASTER_SECRET)])
        .unwrap();
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for index in 0..count {
        let rp_id = filler_rp(index);
        let rp_hash = rp_id_hash(&rp_id);
        let key = loop {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            if let Some(key) = PrivateKey::from_secret(Algorithm::Es256, &secret) {
                break key;
            }
        };
        let sealed = SealedCredential {
            key,
            discoverable: true,
            cred_protect: 1,
            hmac_secret: false,
            kept: false,
        };
        let credential_id = master.seal(&mut rng, &rp_hash, &sealed).unwrap();
        let user_id = filler_user(index);
        let record = ResidentRecord {
            credential_id: credential_id.clone(),
            rp_id,
            user: User {
                id: user_id.clone(),
                name: Some(format!("user{index}@example")),
                display_name: Some(format!("User {index}")),
            },
            sequence: index as u64 + 1,
            counter: 0,
            cred_blob: None,
            large_blob_key: None,
            sealed_key: None,
            backup_flags: None,
        };
        let record_key = [b"c/".as_slice(), &rp_hash, &credential_id].concat();
        let user_key = [b"u/".as_slice(), &rp_hash, &user_id].concat();
        pending.push((record_key, record.to_bytes()));
        pending.push((user_key, credential_id));
        if pending.len() >= 2000 {
            commit_all(&mut store, &mut pending);
        }
    }
    commit_all(&mut store, &mut pending);
    let sequence = (count as u64).to_be_bytes();
    let resident_count = u32::try_from(count).unwrap().to_be_bytes();
    store
        .commit(&[
            Write::Put(b"m/sequence", &sequence),
            Write::Put(b"m/resident-count", &resident_count),
        ])
        .unwrap();
    store
}

fn commit_all(store: &mut MemoryStore, pending: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let batch: Vec<Write<'_>> = pending.iter().map(|(k, v)| Write::Put(k, v)).collect();
    store.commit(&batch).unwrap();
    pending.clear();
}

/// Registers `count` discoverable credentials through makeCredential (EdDSA).
fn fill_ceremony(count: usize) -> MemoryStore {
    let mut authenticator = Authenticator::new(TestPlatform::new(98), config());
    for index in 0..count {
        let request =
            make_credential_request(&filler_rp(index), &filler_user(index), common::EDDSA, true);
        let response = process(&mut authenticator, &request);
        assert_eq!(response.first(), Some(&0x00), "fill {index}");
    }
    authenticator.into_platform().store
}

/// An authenticator on a copy of `store`, with example.com's credential registered.
fn authenticator_on(store: &MemoryStore, seed: u64) -> (Authenticator<TestPlatform>, Vec<u8>) {
    let mut platform = TestPlatform::new(seed);
    platform.store = store.clone();
    let mut authenticator = Authenticator::new(platform, config());
    let registration = make_credential_request(RP_ID, USER_ID, ES256, true);
    let credential = common::credential_id(&process(&mut authenticator, &registration));
    (authenticator, credential)
}

/// The filled store must read back through the core: discover a filler account.
fn check_fill(store: &MemoryStore, count: usize) {
    let (mut authenticator, _) = authenticator_on(store, 5);
    let index = count / 2;
    let request = get_assertion_request(&filler_rp(index), &[]);
    let body = common::expect_ok(&process(&mut authenticator, &request), "discover filler");
    let members = Members::of(&body).unwrap();
    let user = Members::of(members.get(Key::Int(4)).expect("user")).unwrap();
    let ids_in_rp = members
        .get(Key::Int(5))
        .map_or(1, |n| cbor::as_int(n).unwrap());
    let newest = (index / USERS_PER_RP * USERS_PER_RP + USERS_PER_RP - 1).min(count - 1);
    assert_eq!(
        cbor::as_bytes(user.get(Key::Text("id")).unwrap()).unwrap(),
        filler_user(newest)
    );
    assert_eq!(
        usize::try_from(ids_in_rp).unwrap(),
        (newest % USERS_PER_RP) + 1,
        "credentials found for {}",
        filler_rp(index)
    );
}

fn ok(response: &[u8]) {
    assert_eq!(response.first(), Some(&0x00));
}

fn cases() -> Vec<Case> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (reference, _) = PrivateKey::generate(Algorithm::Es256, &mut rng);
    let message: Vec<u8> = (0..=u8::MAX).take(common::ASSERTION_MESSAGE_LEN).collect();
    let mut cases = vec![Case::new("p256_sign/private_key", move || {
        black_box(reference.sign(black_box(&message)).unwrap());
    })];

    let ceremony_fill = std::env::var("FIDELIO_STORE_FILL").is_ok_and(|v| v == "ceremony");
    let mut stores = Vec::new();
    for count in SIZES {
        let start = Instant::now();
        let store = if ceremony_fill {
            fill_ceremony(count)
        } else {
            fill_direct(count)
        };
        println!(
            "filled {count} credentials ({} keys) {} in {:.2?}",
            store.len(),
            if ceremony_fill {
                "through makeCredential"
            } else {
                "directly"
            },
            start.elapsed()
        );
        check_fill(&store, count);
        stores.push((count, store));
    }

    // Ids must be 'static for criterion's and the summary's tables.
    let id = |kind: &str, count: usize| -> &'static str {
        Box::leak(format!("{kind}/{count}_credentials").into_boxed_str())
    };
    for kind in [
        "get_assertion_discoverable",
        "get_assertion_allow_list",
        "make_credential_rk",
    ] {
        for (count, store) in &stores {
            let (mut authenticator, credential) = authenticator_on(store, 1);
            let request = match kind {
                "get_assertion_discoverable" => get_assertion_request(RP_ID, &[]),
                "get_assertion_allow_list" => get_assertion_request(RP_ID, &[&credential]),
                _ => make_credential_request(RP_ID, USER_ID, ES256, true),
            };
            ok(&process(&mut authenticator, &request));
            cases.push(Case::new(id(kind, *count), move || {
                // TestPlatform logs every presence request; keep the log (and memory) flat.
                authenticator.platform_mut().presence.calls.clear();
                let response = process(&mut authenticator, black_box(&request));
                ok(&response);
                black_box(response);
            }));
        }
    }
    cases
}

fn main() {
    let args = common::args();
    let mut cases = cases();
    if common::run_only(&mut cases) {
        return;
    }
    if std::env::var_os("FIDELIO_BENCH_SUMMARY_ONLY").is_none() {
        let mut criterion = Criterion::default()
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5))
            .configure_from_args();
        common::run_criterion(&mut criterion, &mut cases);
        criterion.final_summary();
    }
    if args.measuring {
        let summary = common::summary(&mut cases, args.filter.as_deref(), 2000);
        println!();
        println!(
            "Scaling, cost at {} over cost at {} credentials (in sign-costs, each against its \
             own interleaved reference; raw time in brackets):",
            SIZES[1], SIZES[0]
        );
        for (id, ns, ratio) in &summary.results {
            let Some(kind) = id.strip_suffix(&format!("/{}_credentials", SIZES[1])) else {
                continue;
            };
            let small = format!("{kind}/{}_credentials", SIZES[0]);
            if let Some((_, small_ns, small_ratio)) =
                summary.results.iter().find(|(i, ..)| *i == small)
            {
                println!(
                    "{kind}: {ratio:.3} vs {small_ratio:.3} sign-costs = ×{:.3} \
                     ({:.0} µs vs {:.0} µs = ×{:.3})",
                    ratio / small_ratio,
                    ns / 1000.0,
                    small_ns / 1000.0,
                    ns / small_ns
                );
            }
        }
    }
}
