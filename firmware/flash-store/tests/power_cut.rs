//! Power cuts at every program and erase operation of a commit — a credential-shaped batch, a
//! multi-block value, `Clear` (alone and with writes around it), and a commit that makes
//! sequential-storage recycle a sector — each left clean or half-done: the next boot must find
//! exactly the state before or after the batch (after, if `commit` returned `Ok`), and the
//! store must keep working. The recovery that the next boot runs is itself cut at each of its
//! operations, and must end where an uninterrupted recovery does.
//!
//! Also prints the flash operations each commit costs (see the README).
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

use std::collections::BTreeMap;

use authenticator_core::platform::{Store, Write};
use common::{
    Chip, Op, Rng, St, apply, assert_holds, chip, dump, image, on_chip, open, region, writes,
};
use fidelio_flash_store::sim::Tear;
use fidelio_flash_store::{BlockingFlash, FlashStore};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A store state to cut a batch against.
struct Scenario<C> {
    name: &'static str,
    sectors: usize,
    before: C,
    model: Model,
    ops: Vec<Op>,
    /// Cut the recovery at every n-th of its operations (1: all).
    recovery_stride: u64,
}

fn rp(n: u8) -> Vec<u8> {
    vec![n; 32]
}

fn credential_key(rp_n: u8, id: u8) -> Vec<u8> {
    [b"c/".as_slice(), &rp(rp_n), &[1, id], &[id; 62]].concat()
}

fn user_key(rp_n: u8, user: &[u8]) -> Vec<u8> {
    [b"u/".as_slice(), &rp(rp_n), user].concat()
}

/// A store that looks like a security key after a few registrations.
fn populated<C: Chip>(sectors: usize) -> (C, Model) {
    let mut rng = Rng(7);
    let mut store = open(chip::<C>(sectors), sectors);
    let mut ops = vec![
        Op::Put(b"m/master".to_vec(), rng.bytes(32)),
        Op::Put(b"m/counter".to_vec(), 41u32.to_be_bytes().to_vec()),
        Op::Put(b"m/sequence".to_vec(), 3u64.to_be_bytes().to_vec()),
        Op::Put(b"m/resident-count".to_vec(), 3u32.to_be_bytes().to_vec()),
        Op::Put(b"m/pin".to_vec(), rng.bytes(31)),
        Op::Put(b"m/large-blobs".to_vec(), rng.bytes(1500)),
    ];
    for (rp_n, id, user) in [
        (1u8, 1u8, b"alice".as_slice()),
        (1, 2, b"bob"),
        (2, 3, b"carol"),
    ] {
        ops.push(Op::Put(credential_key(rp_n, id), rng.bytes(260)));
        ops.push(Op::Put(
            user_key(rp_n, user),
            credential_key(rp_n, id)[34..].to_vec(),
        ));
    }
    let batch = writes(&ops);
    store.commit(&batch).unwrap();
    let model = apply(&BTreeMap::new(), &batch);
    assert_holds(&store, &model, "populated");
    (image(&store), model)
}

fn run<C: Chip>(scenario: &Scenario<C>) {
    let batch = writes(&scenario.ops);
    let after = apply(&scenario.model, &batch);
    let sectors = scenario.sectors;
    let context = format!("{} / {}", C::NAME, scenario.name);

    // Uncut, to count the operations.
    let mut store = open(scenario.before.image(), sectors);
    let opened = on_chip(&store, |c| c.stats());
    assert_eq!(
        opened.program_ops + opened.erase_ops,
        0,
        "{context}: a clean open writes"
    );
    store.commit(&batch).unwrap();
    let stats = on_chip(&store, |c| c.stats());
    assert_holds(&store, &after, &context);
    let total = stats.program_ops + stats.erase_ops;
    assert!(total > 0);

    let (mut befores, mut afters, mut recovery_cuts) = (0, 0, 0);
    for n in 1..=total {
        for tear in [Tear::Clean, Tear::Partial] {
            let context = format!("{context}: cut at operation {n}/{total} ({tear:?})");
            let mut store = open(scenario.before.image(), sectors);
            on_chip(&store, |c| {
                c.seed(n);
                c.cut(n, tear);
            });
            let result = store.commit(&batch);
            assert!(
                on_chip(&store, |c| c.is_off()),
                "{context}: the cut never came"
            );
            let cut_image = image(&store);
            drop(store);

            // The next boot.
            let mut boot = BlockingFlash(cut_image.image());
            let recovered = FlashStore::open(&mut boot, region(sectors))
                .unwrap_or_else(|e| panic!("{context}: reopen failed: {e:?}"));
            let state = dump(&recovered);
            if state == after {
                afters += 1;
            } else if state == scenario.model {
                assert!(
                    result.is_err(),
                    "{context}: commit said Ok but the batch is gone"
                );
                befores += 1;
            } else {
                panic!("{context}: the store is neither before nor after the batch");
            }
            drop(recovered);
            assert_eq!(boot.0.violations(), 0, "{context}");
            let recovery = boot.0.stats();
            let recovery_ops = recovery.program_ops + recovery.erase_ops;

            // It keeps working.
            let mut store = open(boot.0.image(), sectors);
            let follow = n.to_le_bytes();
            store
                .commit(&[Write::Put(b"after/cut", &follow), Write::Delete(b"m/pin")])
                .unwrap_or_else(|e| panic!("{context}: commit after recovery failed: {e:?}"));
            let expected = apply(
                &state,
                &[Write::Put(b"after/cut", &follow), Write::Delete(b"m/pin")],
            );
            assert_holds(&store, &expected, &context);
            let again = open(image(&store), sectors);
            assert_holds(&again, &expected, &format!("{context}, reopened"));
            assert_eq!(on_chip(&again, |c| c.violations()), 0, "{context}");

            // A cut during the recovery ends where the recovery would have.
            if tear == Tear::Partial {
                for m in (1..=recovery_ops).step_by(scenario.recovery_stride as usize) {
                    let mut boot = BlockingFlash(cut_image.image());
                    boot.0.seed(m ^ n << 16);
                    boot.0.cut(m, Tear::Partial);
                    let _ = FlashStore::open(&mut boot, region(sectors));
                    let second = open(boot.0.image(), sectors);
                    assert_eq!(
                        dump(&second),
                        state,
                        "{context}: recovery cut at its operation {m}/{recovery_ops}"
                    );
                    recovery_cuts += 1;
                }
            }
        }
    }
    println!(
        "{context}: {total} operations ({} programs, {} erases, {} bytes): {befores} cuts \
         kept the state before, {afters} the state after; {recovery_cuts} recoveries cut",
        stats.program_ops, stats.erase_ops, stats.bytes_written
    );
    assert!(
        befores > 0 && afters > 0,
        "{context}: only one outcome was exercised"
    );
}

fn make_credential<C: Chip>() {
    let (before, model) = populated::<C>(8);
    // makeCredential replacing bob's credential at RP 1: the five writes the core commits.
    let ops = vec![
        Op::Delete(credential_key(1, 2)),
        Op::Put(credential_key(1, 4), Rng(1).bytes(262)),
        Op::Put(user_key(1, b"bob"), credential_key(1, 4)[34..].to_vec()),
        Op::Put(b"m/sequence".to_vec(), 4u64.to_be_bytes().to_vec()),
        Op::Put(b"m/resident-count".to_vec(), 3u32.to_be_bytes().to_vec()),
    ];
    run(&Scenario {
        name: "makeCredential (replace an account)",
        sectors: 8,
        before,
        model,
        ops,
        recovery_stride: 1,
    });
}

fn counter_update<C: Chip>() {
    let (before, model) = populated::<C>(8);
    let ops = vec![Op::Put(b"m/counter".to_vec(), 42u32.to_be_bytes().to_vec())];
    run(&Scenario {
        name: "getAssertion (counter)",
        sectors: 8,
        before,
        model,
        ops,
        recovery_stride: 1,
    });
}

fn large_value<C: Chip>() {
    let (before, model) = populated::<C>(8);
    let ops = vec![
        Op::Put(b"m/large-blobs".to_vec(), Rng(2).bytes(1800)),
        Op::Delete(user_key(2, b"carol")),
    ];
    run(&Scenario {
        name: "large blob array (4 blocks)",
        sectors: 8,
        before,
        model,
        ops,
        recovery_stride: 3,
    });
}

fn clear_alone<C: Chip>() {
    let (before, model) = populated::<C>(8);
    run(&Scenario {
        name: "Clear (authenticatorReset)",
        sectors: 8,
        before,
        model,
        ops: vec![Op::Clear],
        recovery_stride: 2,
    });
}

fn clear_with_writes<C: Chip>() {
    let (before, model) = populated::<C>(8);
    let ops = vec![
        Op::Put(b"gone/anyway".to_vec(), b"x".to_vec()),
        Op::Clear,
        Op::Put(b"m/master".to_vec(), Rng(3).bytes(32)),
        Op::Put(b"m/large-blobs".to_vec(), Rng(4).bytes(1200)),
        Op::Delete(b"m/counter".to_vec()),
    ];
    run(&Scenario {
        name: "writes, Clear, writes",
        sectors: 8,
        before,
        model,
        ops,
        recovery_stride: 2,
    });
}

/// Finds a commit during which sequential-storage moves live items out of the oldest sector
/// and erases it.
fn garbage_collection<C: Chip>() {
    const SECTORS: usize = 5;
    let mut rng = Rng(99);
    let mut store: St<C> = open(chip::<C>(SECTORS), SECTORS);
    // Keys that stay: the oldest sector will hold live items.
    let lasting: Vec<Op> = (0..4u8)
        .map(|i| Op::Put(vec![b's', i], rng.bytes(200)))
        .collect();
    let batch = writes(&lasting);
    store.commit(&batch).unwrap();
    let mut model = apply(&Model::new(), &batch);
    for round in 0.. {
        assert!(round < 500, "no commit recycled a sector");
        let key = format!("k{}", rng.below(6)).into_bytes();
        let len = 150 + rng.below(300);
        let ops = vec![
            Op::Put(key, rng.bytes(len)),
            Op::Put(b"m/counter".to_vec(), (round as u32).to_be_bytes().to_vec()),
        ];
        let before = image(&store);
        on_chip(&store, |c| c.reset_stats());
        let batch = writes(&ops);
        store.commit(&batch).unwrap();
        let stats = on_chip(&store, |c| c.stats());
        // Erased a sector, and wrote well over the batch itself: live items moved.
        if stats.erase_ops > 0 && stats.bytes_written > 1000 {
            run(&Scenario {
                name: "commit that recycles a sector",
                sectors: SECTORS,
                before,
                model,
                ops,
                recovery_stride: 4,
            });
            return;
        }
        model = apply(&model, &batch);
    }
}

on_both_chips! {
    make_credential_batch => make_credential;
    counter_batch => counter_update;
    multi_block_value => large_value;
    reset => clear_alone;
    clear_between_writes => clear_with_writes;
    sector_recycling => garbage_collection;
}

/// A cut before the superblock of a fresh store is complete: the next boot formats again.
#[test]
fn first_boot_cut_anywhere() {
    type C = fidelio_flash_store::sim::Nrf52840Sim;
    for n in 1..=8u64 {
        for tear in [Tear::Clean, Tear::Partial] {
            let mut flash = BlockingFlash(chip::<C>(6));
            flash.0.seed(n);
            flash.0.cut(n, tear);
            let opened = FlashStore::open(&mut flash, region(6)).is_ok();
            let cut = flash.0.is_off();
            assert!(opened || cut);
            let mut store = open(flash.0.image(), 6);
            assert!(dump(&store).is_empty(), "cut {n} {tear:?} (cut: {cut})");
            store.commit(&[Write::Put(b"k", b"v")]).unwrap();
            let store = open(image(&store), 6);
            assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
        }
    }
}
