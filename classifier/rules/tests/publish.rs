//! RCU publication under concurrency: readers always see a whole table whose epoch only grows,
//! every table is freed once readers pass a quiescent point, and memory returns to baseline.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use septa_classifier::{
    Action, AddrMatch, FlowKey, PortRange, Prefix, Rule, RuleTable, TableCell, compile,
};

/// Table `n` answers every key with rule id `n` and has `n % 7 + 1` rules, so a torn table would
/// give an id that disagrees with its epoch or its length.
fn table(n: u32) -> RuleTable {
    let mut rules: Vec<Rule> = (0..n % 7)
        .map(|i| Rule {
            id: septa_classifier::RuleId(1_000_000 + i),
            dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(192, 0, 2, i as u8), 32)),
            dport: PortRange::exact(1),
            ..Rule::any(0, Action::Deny)
        })
        .collect();
    rules.push(Rule::any(n, Action::Allow));
    compile(&rules).unwrap()
}

#[test]
fn readers_never_see_torn_or_freed_tables() {
    let cell = TableCell::new(table(0));
    let stop = Arc::new(AtomicBool::new(false));
    let key = FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        6,
        1000,
        80,
    );
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (cell, stop) = (Arc::clone(&cell), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut r = cell.reader();
                let (mut last_epoch, mut loads) = (0, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let t = r.load();
                    let id = t.classify(&key).rule.unwrap().0;
                    assert!(t.epoch() >= last_epoch, "epoch went backwards");
                    assert_eq!(t.len() as u32, id % 7 + 1, "torn table");
                    // Epoch 1 is table 0; publish k (k >= 1) stamps epoch k + 1 on table k.
                    assert_eq!(t.epoch(), u64::from(id) + 1);
                    last_epoch = t.epoch();
                    loads += 1;
                }
                r.quiescent();
                loads
            })
        })
        .collect();
    let mut retired = Vec::new();
    for n in 1..=300u32 {
        retired.push(Arc::downgrade(&cell.current()));
        assert_eq!(cell.publish(table(n)), u64::from(n) + 1);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // Every reader passed a quiescent point after the last publish: only the running table lives.
    assert_eq!(cell.reclaim(), 0);
    assert_eq!(retired.iter().filter(|w| w.upgrade().is_some()).count(), 0);
    assert_eq!(Arc::strong_count(&cell.current()), 2);
}

#[test]
fn a_publish_is_visible_at_the_next_load() {
    let cell = TableCell::new(table(0));
    let mut r = cell.reader();
    assert_eq!(r.load().epoch(), 1);
    let e = cell.publish(table(5));
    let t = r.load();
    assert_eq!((t.epoch(), t.len()), (e, 6));
}

#[test]
fn an_idle_reader_releases_retired_tables_at_its_quiescent_point() {
    let cell = TableCell::new(table(0));
    let mut r = cell.reader();
    let first = Arc::downgrade(&cell.current());
    let _ = r.load();
    cell.publish(table(1));
    assert!(
        first.upgrade().is_some(),
        "the reader still holds the old table"
    );
    assert_eq!(cell.reclaim(), 1, "not freed while a reader holds it");
    r.quiescent();
    assert!(
        first.upgrade().is_some(),
        "the reader's release never frees on the worker"
    );
    assert_eq!(cell.reclaim(), 0);
    assert!(
        first.upgrade().is_none(),
        "freed by the control side after the quiescent point"
    );
}

#[test]
fn concurrent_publishers_never_roll_the_epoch_back() {
    let cell = TableCell::new(table(0));
    let publishers: Vec<_> = (0..3u32)
        .map(|p| {
            let cell = Arc::clone(&cell);
            std::thread::spawn(move || {
                let mut last = 0;
                for n in 0..100u32 {
                    let epoch = cell.publish(table(p * 1000 + n));
                    assert!(epoch > last, "epochs handed out twice or out of order");
                    last = epoch;
                    // The running table is never older than the one this thread just published.
                    assert!(
                        cell.current().epoch() >= epoch,
                        "a slower publisher rolled back"
                    );
                }
                last
            })
        })
        .collect();
    let newest = publishers
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    assert_eq!(newest, 301, "1 initial table + 300 publishes");
    assert_eq!(cell.current().epoch(), newest, "the newest epoch runs");
    assert_eq!(cell.reclaim(), 0, "no reader holds a retired table");
}
