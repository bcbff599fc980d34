//! The real core on the flash store: 260 discoverable credentials made through
//! authenticatorMakeCredential survive a reboot, and authenticatorGetAssertion (with
//! getNextAssertion) finds every one of them. Also measures what a credential costs in flash
//! and how many fit in a 256 KiB region (printed; see the README).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "tests"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use authenticator_core::cbor::{self, Value};
use authenticator_core::platform::Store;
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, block_on};
use common::{Chip, St, chip, image, on_chip, open};

/// 256 KiB with 4 KiB sectors.
const SECTORS: usize = 64;

type Device<C> = Authenticator<TestPlatform<St<C>>>;

fn new_device<C: Chip>(store: St<C>, seed: u64) -> Device<C> {
    let mut config = Config::security_key();
    config.max_discoverable_credentials = 10_000;
    Authenticator::new(TestPlatform::with_store(seed, store), config)
}

fn text(s: &str) -> Value {
    cbor::text(s)
}

fn request(command: u8, entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut bytes = vec![command];
    bytes.extend(cbor::to_vec(&cbor::map(entries)));
    bytes
}

fn send<C: Chip>(device: &mut Device<C>, bytes: &[u8]) -> (u8, Option<Value>) {
    let response = block_on(device.process(bytes));
    let body = (response.len() > 1).then(|| cbor::decode(&response[1..]).unwrap());
    (response[0], body)
}

fn member(value: &Value, key: i64) -> Option<&Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| *k == cbor::int(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn rp_id(n: usize) -> String {
    format!("rp{n:03}.example.com")
}

fn user_id(n: usize) -> Vec<u8> {
    let mut id = vec![0xA5; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    id
}

fn make_credential<C: Chip>(device: &mut Device<C>, rp: &str, user: &[u8], alg: i64) -> u8 {
    let n = u64::from_be_bytes(user[..8].try_into().unwrap());
    let params = vec![
        (cbor::int(1), cbor::bytes(&[7u8; 32])),
        (
            cbor::int(2),
            cbor::map(vec![
                (text("id"), text(rp)),
                (text("name"), text("Example")),
            ]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (text("id"), cbor::bytes(user)),
                (text("name"), text(&format!("user{n}@example.com"))),
                (text("displayName"), text(&format!("User {n}"))),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(vec![cbor::map(vec![
                (text("alg"), cbor::int(alg)),
                (text("type"), text("public-key")),
            ])]),
        ),
        (
            cbor::int(7),
            cbor::map(vec![(text("rk"), Value::Bool(true))]),
        ),
    ];
    send(device, &request(0x01, params)).0
}

/// The user ids of every discoverable credential the device offers for `rp`.
fn discover<C: Chip>(device: &mut Device<C>, rp: &str) -> BTreeSet<Vec<u8>> {
    let params = vec![
        (cbor::int(1), text(rp)),
        (cbor::int(2), cbor::bytes(&[9u8; 32])),
    ];
    let (status, body) = send(device, &request(0x02, params));
    assert_eq!(status, 0, "getAssertion for {rp}");
    let body = body.unwrap();
    let count = match member(&body, 5) {
        Some(Value::Integer(n)) => usize::try_from(i128::from(*n)).unwrap(),
        _ => 1,
    };
    let user = |body: &Value| match member(body, 4).and_then(|u| match u {
        Value::Map(e) => e
            .iter()
            .find(|(k, _)| *k == text("id"))
            .map(|(_, v)| v.clone()),
        _ => None,
    }) {
        Some(Value::Bytes(id)) => id,
        other => panic!("no user id for {rp}: {other:?}"),
    };
    let mut users = BTreeSet::from([user(&body)]);
    for _ in 1..count {
        let (status, body) = send(device, &[0x08]);
        assert_eq!(status, 0, "getNextAssertion for {rp}");
        users.insert(user(&body.unwrap()));
    }
    assert_eq!(users.len(), count);
    users
}

fn take_store<C: Chip>(device: Device<C>) -> St<C> {
    device.into_platform().store
}

/// 260 credentials over 200 relying parties (60 with two accounts), alternately ES256 and
/// EdDSA, then a reboot, then every one discovered.
fn survive_reboot<C: Chip>() {
    const CREDENTIALS: usize = 260;
    const RPS: usize = 200;
    let mut device = new_device::<C>(open(chip::<C>(SECTORS), SECTORS), 1);
    let mut expected: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut used_after_first = 0;
    for n in 0..CREDENTIALS {
        let rp = rp_id(n % RPS);
        let alg = if n % 2 == 0 { -7 } else { -8 };
        assert_eq!(
            make_credential(&mut device, &rp, &user_id(n), alg),
            0,
            "credential {n}"
        );
        expected.entry(rp).or_default().insert(user_id(n));
        if n == 0 {
            used_after_first = device.platform().store.usage().unwrap().used_bytes;
        }
    }
    let store = take_store(device);
    let usage = store.usage().unwrap();
    let per_credential = (usage.used_bytes - used_after_first) / (CREDENTIALS - 1);

    // What a credential is made of.
    let records: Vec<(Vec<u8>, Vec<u8>)> = common::scan(&store, b"c/");
    let accounts: Vec<(Vec<u8>, Vec<u8>)> = common::scan(&store, b"u/");
    assert_eq!(records.len(), CREDENTIALS);
    assert_eq!(accounts.len(), CREDENTIALS);
    let average = |items: &[(Vec<u8>, Vec<u8>)], f: fn(&(Vec<u8>, Vec<u8>)) -> usize| {
        items.iter().map(f).sum::<usize>() / items.len()
    };
    println!(
        "{}: a resident credential: record key {} + value {} bytes, account key {} + value {} \
         bytes; {per_credential} bytes of flash each (headers and padding included); {} keys, \
         {} of {} bytes used, {} block ids",
        C::NAME,
        average(&records, |r| r.0.len()),
        average(&records, |r| r.1.len()),
        average(&accounts, |r| r.0.len()),
        average(&accounts, |r| r.1.len()),
        usage.keys,
        usage.used_bytes,
        usage.limit_bytes,
        usage.block_ids,
    );
    let empty = open(chip::<C>(SECTORS), SECTORS).usage().unwrap();
    println!(
        "{}: a 256 KiB region takes up to {} bytes of records: about {} such credentials",
        C::NAME,
        empty.limit_bytes,
        (empty.limit_bytes - used_after_first) / per_credential + 1
    );

    // Reboot.
    let rebooted = open(image(&store), SECTORS);
    on_chip(&rebooted, |c| c.reset_stats());
    let mut device = new_device::<C>(rebooted, 2);
    let mut cold = None;
    for (rp, users) in &expected {
        assert_eq!(&discover(&mut device, rp), users, "{rp}");
        if cold.is_none() {
            cold = Some(on_chip(&device.platform().store, |c| c.stats()));
        }
    }
    let store = &device.platform().store;
    on_chip(store, |c| c.reset_stats());
    let mut device_again = device;
    let first = expected.keys().next().unwrap().clone();
    discover(&mut device_again, &first);
    let warm = on_chip(&device_again.platform().store, |c| c.stats());
    println!(
        "{}: first getAssertion after boot read {} bytes of flash ({} reads); the same again \
         read {} bytes ({} reads) and wrote {} bytes",
        C::NAME,
        cold.unwrap().bytes_read,
        cold.unwrap().reads,
        warm.bytes_read,
        warm.reads,
        warm.bytes_written
    );
    assert_eq!(
        on_chip(&device_again.platform().store, |c| c.violations()),
        0
    );
}

/// Registers EdDSA credentials at distinct relying parties until the core reports
/// CTAP2_ERR_KEY_STORE_FULL; the store then still works and survives a reboot.
fn fill_region<C: Chip>() {
    let mut device = new_device::<C>(open(chip::<C>(SECTORS), SECTORS), 3);
    let mut made = 0;
    loop {
        let status = make_credential(&mut device, &rp_id(made), &user_id(made), -8);
        if status != 0 {
            assert_eq!(status, 0x28, "expected CTAP2_ERR_KEY_STORE_FULL");
            break;
        }
        made += 1;
        assert!(made < 5000, "never full");
    }
    let usage = device.platform().store.usage().unwrap();
    println!(
        "{}: a 256 KiB region held {made} resident credentials ({} of {} bytes)",
        C::NAME,
        usage.used_bytes,
        usage.limit_bytes
    );
    assert!(made >= 256, "only {made} credentials fit");
    // Still usable: an assertion (which writes the counter), and a reboot.
    assert_eq!(
        discover(&mut device, &rp_id(0)),
        BTreeSet::from([user_id(0)])
    );
    let store = take_store(device);
    let rebooted = open(image(&store), SECTORS);
    assert_eq!(common::scan(&rebooted, b"c/").len(), made);
    let mut device = new_device::<C>(rebooted, 4);
    assert_eq!(
        discover(&mut device, &rp_id(made - 1)),
        BTreeSet::from([user_id(made - 1)])
    );
    let _ = device.platform().store.get(b"m/counter").unwrap();
}

on_both_chips! {
    credentials_survive_reboot => survive_reboot;
}

#[test]
fn region_fills_up_cleanly() {
    fill_region::<fidelio_flash_store::sim::Nrf52840Sim>();
}
