//! One suite, written once, run against [`SledStore`] and [`PgStore`]: each
//! property is a generic function, and `both!` makes a test of it for each.

use std::collections::HashSet;

use store::{AppendRejection, ExpectedVersion, PgStore, SledStore, Snapshot, GENESIS_HASH};
use uuid::Uuid;

use super::fixture::{append, at, event, Backend};

macro_rules! both {
    ($($property:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::$property::<super::SledStore>().await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::$property::<super::PgStore>().await
                }
            )*
        }
    };
}

/// A new log of ten records of the tenant stream, one append each.
async fn ten_records<S: Backend>() -> super::fixture::Log<S> {
    let log = S::fresh().await;
    for i in 1..=10u128 {
        log.append(append("tenant", ExpectedVersion::Any, vec![event(i)], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    log
}

both!(
    appends_are_gapless_versioned_chained_and_read_back_every_way,
    a_wrong_expected_version_names_both_versions_and_writes_nothing,
    an_idempotent_retry_returns_the_original_positions_and_a_partial_one_is_refused,
    a_command_of_several_appends_lands_whole_or_not_at_all,
    a_transaction_lands_its_appends_once_committed_and_none_if_the_log_moved,
    a_snapshot_round_trips_and_one_altered_or_of_another_history_is_a_miss,
    l3_verify_passes_then_names_a_record_whose_body_was_changed,
    ten_writers_at_once_lose_nothing_and_leave_a_gapless_chain,
    a3_of_ten_racers_expecting_one_version_exactly_one_wins,
    l3_sealed_records_copied_into_an_empty_log_are_byte_for_byte_the_same,
    a_handle_another_writer_overtook_is_decided_by_the_log_not_by_what_it_last_wrote,
    a_log_read_in_pages_is_the_log_and_a_read_sees_the_handles_own_appends,
    a_snapshot_s_parts_are_read_one_at_a_time_and_a_changed_byte_anywhere_is_a_miss,
    a_part_held_by_another_cache_is_read_there_and_checked_by_the_digest_that_points_at_it,
);

/// Issue 29: a tip points at parts that another cache holds (a snapshot of
/// its series, or a holder apart); each is read there and checked against
/// the digest in the tip's own authentic table, so a holder changed or gone
/// is a miss of that part, never other bytes.
async fn a_part_held_by_another_cache_is_read_there_and_checked_by_the_digest_that_points_at_it<
    S: Backend,
>() {
    use store::{Holder, PartEntry, SnapshotPart};
    let log = ten_records::<S>().await;
    let (name, holder) = ("aggregate/tenant", store::parts_holder("aggregate/tenant"));
    let bytes = |b: u8, n: usize| vec![b; n];
    let owned = |parts: &[Vec<u8>]| parts.iter().cloned().map(SnapshotPart::Bytes).collect();
    let series =
        Snapshot { seq: 4, state: b"series".to_vec(), parts: owned(&[bytes(1, 300), bytes(2, 200)]) };
    log.save_snapshot(name, series).await.unwrap();
    let apart = Snapshot { seq: 6, state: Vec::new(), parts: owned(&[bytes(3, 100), bytes(4, 50)]) };
    log.save_snapshot(&holder, apart).await.unwrap();
    let point = |table: Vec<PartEntry>, index: u32, seq: u64, apart: bool| {
        let entry = table[index as usize].clone();
        assert_eq!(entry.held_by, None, "held where it was written");
        SnapshotPart::Held(PartEntry { held_by: Some(Holder { seq, index, apart }), ..entry })
    };
    let in_series = point(log.snapshot_table(name, 4).await.unwrap().unwrap(), 1, 4, false);
    let in_holder = point(log.snapshot_table(&holder, 6).await.unwrap().unwrap(), 0, 6, true);
    let parts = vec![in_series, in_holder, SnapshotPart::Bytes(bytes(5, 10))];
    log.save_snapshot(name, Snapshot { seq: 8, state: b"tip".to_vec(), parts }).await.unwrap();
    let read = log.snapshot_parts(name, 8, &[0, 1, 2]).await.unwrap();
    assert_eq!(read, Some(vec![bytes(2, 200), bytes(3, 100), bytes(5, 10)]));
    // A pointer to a pointer is not followed.
    let table = log.snapshot_table(name, 8).await.unwrap().unwrap();
    let twice = SnapshotPart::Held(PartEntry {
        held_by: Some(Holder { seq: 8, index: 0, apart: false }),
        ..table[0].clone()
    });
    log.save_snapshot(name, Snapshot { seq: 9, state: Vec::new(), parts: vec![twice] }).await.unwrap();
    assert_eq!(log.snapshot_parts(name, 9, &[0]).await.unwrap(), None);
    // The holder's part changed: a miss of that part, the others read.
    S::alter_cache(&log, &holder, 6, |b| b[4 + 10] ^= 1).await;
    assert_eq!(log.snapshot_parts(name, 8, &[1]).await.unwrap(), None);
    assert_eq!(log.snapshot_parts(name, 8, &[0, 2]).await.unwrap(), Some(vec![bytes(2, 200), bytes(5, 10)]));
    // Gone: a miss too.
    log.remove_snapshots(&holder, 0..u64::MAX).await.unwrap();
    assert_eq!(log.snapshot_parts(name, 8, &[1]).await.unwrap(), None);
}

/// Issue 29 (8g): a snapshot saved with parts loads without them; each part
/// is read on its own, checked against the table its MAC covers. A byte
/// changed in a part, the table or the state makes a miss of what it
/// touches: the part read, or the whole snapshot.
async fn a_snapshot_s_parts_are_read_one_at_a_time_and_a_changed_byte_anywhere_is_a_miss<S: Backend>() {
    let log = ten_records::<S>().await;
    let name = "aggregate/tenant";
    let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let state = b"the head".to_vec();
    let saved = parts.iter().cloned().map(store::SnapshotPart::Bytes).collect();
    log.save_snapshot(name, Snapshot { seq: 8, state: state.clone(), parts: saved }).await.unwrap();
    let loaded = log.load_snapshot(name, u64::MAX).await.unwrap();
    assert_eq!(
        loaded,
        Some(Snapshot { seq: 8, state: state.clone(), parts: Vec::new() }),
        "no part with the head"
    );
    let read = log.snapshot_parts(name, 8, &[3, 0]).await.unwrap();
    assert_eq!(read, Some(vec![parts[3].clone(), parts[0].clone()]));
    assert_eq!(log.snapshot_parts(name, 8, &[5]).await.unwrap(), None, "past the parts");
    assert_eq!(log.snapshot_parts(name, 7, &[0]).await.unwrap(), None, "no snapshot there");
    // A byte of part 1 changed: that part is a miss, the others and the head are not.
    let at_part_1 = 4 + parts[0].len() + 10;
    S::alter_cache(&log, name, 8, |bytes| bytes[at_part_1] ^= 1).await;
    assert_eq!(log.snapshot_parts(name, 8, &[1]).await.unwrap(), None);
    assert_eq!(log.snapshot_parts(name, 8, &[2]).await.unwrap(), Some(vec![parts[2].clone()]));
    assert_eq!(log.check_snapshot(name, 8).await.unwrap().map(|c| c.is_ok()), Some(true));
    S::alter_cache(&log, name, 8, |bytes| bytes[at_part_1] ^= 1).await;
    // In the table (a part's digest), or the state: the whole snapshot.
    let table_byte = |bytes: &mut Vec<u8>| {
        let at = bytes.len() - 64 - 12 - 53 + 9;
        bytes[at] ^= 1;
    };
    S::alter_cache(&log, name, 8, table_byte).await;
    assert_eq!(log.check_snapshot(name, 8).await.unwrap(), Some(Err(store::CacheMiss::Forged)));
    assert_eq!(log.snapshot_parts(name, 8, &[4]).await.unwrap(), None);
    assert_eq!(log.load_snapshot(name, u64::MAX).await.unwrap(), None);
}

/// Pages read in turn are the log read whole (PostgreSQL fetches the next
/// page ahead of each full one); a page asked for otherwise than the one
/// fetched ahead is read as asked; and once the handle appended, a read
/// sees what it appended, not a page fetched before.
async fn a_log_read_in_pages_is_the_log_and_a_read_sees_the_handles_own_appends<S: Backend>() {
    let log = S::fresh().await;
    for n in 1..=50 {
        log.append(append("tenant", ExpectedVersion::Any, vec![event(n)], at(n as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    let whole = log.read_log(1, u64::MAX, usize::MAX).await.unwrap();
    let mut paged = Vec::new();
    loop {
        let page = log.read_log(paged.len() as u64 + 1, u64::MAX, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, whole);
    // Not the page fetched ahead (11..=20): as asked.
    assert_eq!(log.read_log(1, 20, 10).await.unwrap(), whole[..10]);
    assert_eq!(log.read_log(11, 15, 10).await.unwrap(), whole[10..15]);
    assert_eq!(log.read_log(12, 40, 3).await.unwrap(), whole[11..14]);
    // The last full page has an empty one fetched ahead; the handle then
    // appends (that the page was fetched before: `postgres.rs`).
    assert_eq!(log.read_log(41, u64::MAX, 10).await.unwrap(), whole[40..]);
    for n in 51..=55 {
        log.append(append("tenant", ExpectedVersion::Any, vec![event(n)], at(n as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    let after = log.read_log(51, u64::MAX, 10).await.unwrap();
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), (51..=55).collect::<Vec<_>>());
    let sealed = log.read_sealed(41, u64::MAX, 10).await.unwrap();
    assert_eq!(sealed.iter().map(|s| s.record().seq).collect::<Vec<_>>(), (41..=50).collect::<Vec<_>>());
    assert_eq!(log.read_sealed(51, u64::MAX, 10).await.unwrap().len(), 5);
}

/// A handle remembers where its last append left the log (PostgreSQL lands
/// the next append in one statement while that is still true); once
/// another handle appended, every outcome is still the log's: the conflict,
/// the retry, the next version of a stream appended to with any version,
/// and a chain without a gap.
async fn a_handle_another_writer_overtook_is_decided_by_the_log_not_by_what_it_last_wrote<S: Backend>() {
    let log = S::fresh().await;
    let other = S::another(&log).await;
    let first = append("tenant", ExpectedVersion::Exactly(0), vec![event(1)], at(0));
    log.append(first.clone()).await.unwrap().unwrap();
    log.append(append("env", ExpectedVersion::Exactly(0), vec![event(2)], at(0))).await.unwrap().unwrap();
    other
        .append(append("tenant", ExpectedVersion::Exactly(1), vec![event(3)], at(1)))
        .await
        .unwrap()
        .unwrap();
    // What `log` last wrote says tenant is at 1: the log says 2.
    let stale =
        log.append(append("tenant", ExpectedVersion::Exactly(1), vec![event(4)], at(2))).await.unwrap();
    assert_eq!(stale, Err(AppendRejection::Conflict { stream: "tenant".into(), expected: 1, actual: 2 }));
    let retry = log.append(first).await.unwrap().unwrap();
    assert!(retry.was_retry && retry.first_seq == 1, "{retry:?}");
    other.append(append("env", ExpectedVersion::Any, vec![event(5)], at(3))).await.unwrap().unwrap();
    let any = log.append(append("env", ExpectedVersion::Any, vec![event(6)], at(3))).await.unwrap().unwrap();
    assert_eq!((any.first_seq, any.stream_version), (5, 3));
    // Following itself again, and then the other handle.
    log.append(append("env", ExpectedVersion::Exactly(3), vec![event(7)], at(4))).await.unwrap().unwrap();
    let last = other.append(append("env", ExpectedVersion::Exactly(4), vec![event(8)], at(4))).await.unwrap();
    assert_eq!(last.map(|a| (a.first_seq, a.stream_version)), Ok((7, 5)));
    let records = log.read_log(1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash), "one chain");
    assert_eq!(log.verify().await.unwrap().problem, None);
}

async fn appends_are_gapless_versioned_chained_and_read_back_every_way<S: Backend>() {
    let log = S::fresh().await;
    assert_eq!(log.head().await.unwrap(), None);
    assert_eq!(log.seq_at(at(100)).await.unwrap(), 0);
    let a = log.append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1), event(2)], at(0))).await;
    let b = log.append(append("env/x", ExpectedVersion::Exactly(0), vec![event(3)], at(5))).await;
    let c = log.append(append("tenant", ExpectedVersion::Exactly(2), vec![event(4)], at(5))).await;
    let positions = [a, b, c].map(|r| {
        let r = r.unwrap().unwrap();
        (r.first_seq, r.last_seq, r.stream_version, r.was_retry)
    });
    assert_eq!(positions, [(1, 2, 2, false), (3, 3, 1, false), (4, 4, 3, false)]);
    let all = log.read_log(1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    assert!(all.windows(2).all(|w| w[1].prev_hash == w[0].hash), "each record chains to the one before");
    assert_eq!(all[2].payload, b"payload 3");
    assert_eq!(all[3].origin.as_ref().map(|o| o.host.as_str()), Some("pc-7"));
    assert_eq!(all[1].origin, None, "both formats");
    assert_eq!(log.read_log(2, 3, usize::MAX).await.unwrap().len(), 2);
    assert_eq!(log.read_log(2, u64::MAX, 1).await.unwrap()[0].seq, 2);
    let tenant = log.read_stream("tenant", 1).await.unwrap();
    assert_eq!(tenant.iter().map(|r| (r.seq, r.version)).collect::<Vec<_>>(), [(1, 1), (2, 2), (4, 3)]);
    assert_eq!(log.read_stream("tenant", 3).await.unwrap().len(), 1);
    let until = log.read_stream_until("tenant", 1, 3).await.unwrap();
    assert_eq!(until.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(log.stream_version("tenant").await.unwrap(), 3);
    assert_eq!(log.stream_version("env/none").await.unwrap(), 0);
    let head = log.head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.recorded_at, head.hash), (4, at(5), all[3].hash));
    // The last record at or before a time, records at that time included.
    for (time, seq) in [(at(-1), 0), (at(0), 2), (at(4), 2), (at(5), 4), (at(9), 4)] {
        assert_eq!(log.seq_at(time).await.unwrap(), seq, "at {time}");
    }
    // An empty append lands nothing and says where the next one would.
    let empty =
        log.append(append("tenant", ExpectedVersion::Exactly(3), vec![], at(6))).await.unwrap().unwrap();
    assert_eq!((empty.first_seq, empty.last_seq, empty.stream_version), (5, 4, 3));
}

async fn a_wrong_expected_version_names_both_versions_and_writes_nothing<S: Backend>() {
    let log = S::fresh().await;
    log.append(append("tenant", ExpectedVersion::Exactly(0), vec![event(1)], at(0))).await.unwrap().unwrap();
    let refused =
        log.append(append("tenant", ExpectedVersion::Exactly(0), vec![event(2)], at(1))).await.unwrap();
    assert_eq!(refused, Err(AppendRejection::Conflict { stream: "tenant".into(), expected: 0, actual: 1 }));
    let earlier = log.append(append("tenant", ExpectedVersion::Any, vec![event(3)], at(-1))).await.unwrap();
    assert!(matches!(earlier, Err(AppendRejection::TimeWentBackwards { .. })), "{earlier:?}");
    assert_eq!(log.head().await.unwrap().map(|h| h.seq), Some(1), "nothing written");
}

async fn an_idempotent_retry_returns_the_original_positions_and_a_partial_one_is_refused<S: Backend>() {
    let log = S::fresh().await;
    let command = append("tenant", ExpectedVersion::Exactly(0), vec![event(1), event(2)], at(0));
    let first = log.append(command.clone()).await.unwrap().unwrap();
    log.append(append("tenant", ExpectedVersion::Exactly(2), vec![event(3)], at(1))).await.unwrap().unwrap();
    // The same command again (its expected version long gone): where it landed.
    let again = log.append(command).await.unwrap().unwrap();
    assert!(again.was_retry);
    assert_eq!((again.first_seq, again.last_seq, again.stream_version), (first.first_seq, first.last_seq, 2));
    let partial = append("tenant", ExpectedVersion::Any, vec![event(3), event(4)], at(2));
    let refused = log.append(partial).await.unwrap();
    assert_eq!(refused, Err(AppendRejection::PartialRetry { event_id: Uuid::from_u128(3) }));
    let twice = append("tenant", ExpectedVersion::Any, vec![event(5), event(5)], at(2));
    assert_eq!(
        log.append(twice).await.unwrap(),
        Err(AppendRejection::PartialRetry { event_id: Uuid::from_u128(5) })
    );
    assert_eq!(log.head().await.unwrap().map(|h| h.seq), Some(3), "written once");
}

async fn a_command_of_several_appends_lands_whole_or_not_at_all<S: Backend>() {
    let log = S::fresh().await;
    log.append(append("env/a", ExpectedVersion::Exactly(0), vec![event(1)], at(0))).await.unwrap().unwrap();
    // The second append expects a version the stream is not at: neither lands.
    let command = vec![
        append("tenant", ExpectedVersion::Exactly(0), vec![event(2), event(3)], at(1)),
        append("env/a", ExpectedVersion::Exactly(0), vec![event(4)], at(1)),
    ];
    let refused = log.append_all(command).await.unwrap();
    assert_eq!(refused, Err(AppendRejection::Conflict { stream: "env/a".into(), expected: 0, actual: 1 }));
    assert_eq!(log.head().await.unwrap().map(|h| h.seq), Some(1));
    assert_eq!(log.stream_version("tenant").await.unwrap(), 0);
    // Both right: both land, the second seeing the first's versions.
    let command = vec![
        append("tenant", ExpectedVersion::Exactly(0), vec![event(2), event(3)], at(1)),
        append("env/a", ExpectedVersion::Exactly(1), vec![event(4)], at(1)),
        append("tenant", ExpectedVersion::Exactly(2), vec![event(5)], at(1)),
    ];
    let landed = log.append_all(command).await.unwrap().unwrap();
    let positions: Vec<_> = landed.iter().map(|a| (a.first_seq, a.last_seq, a.stream_version)).collect();
    assert_eq!(positions, [(2, 3, 2), (4, 4, 2), (5, 5, 3)]);
}

async fn a_transaction_lands_its_appends_once_committed_and_none_if_the_log_moved<S: Backend>() {
    let log = S::fresh().await;
    let other = S::another(&log).await;
    let mut tx = log.begin().await.unwrap();
    for i in 0..300u64 {
        let expected = ExpectedVersion::Exactly(i);
        assert!(tx.send(append("tenant", expected, vec![event(u128::from(i) + 1)], at(i as i64))).await);
    }
    let landed = tx.commit().await.unwrap().unwrap();
    assert_eq!((landed.len(), landed[299].last_seq, landed[299].stream_version), (300, 300, 300));
    // Dropped: nothing written.
    let mut tx = log.begin().await.unwrap();
    assert!(tx.send(append("tenant", ExpectedVersion::Any, vec![event(1000)], at(400))).await);
    drop(tx);
    // Another writer lands while a transaction is open: the whole of it is refused.
    let mut tx = log.begin().await.unwrap();
    assert!(tx.send(append("tenant", ExpectedVersion::Any, vec![event(1001)], at(400))).await);
    other
        .append(append("env/b", ExpectedVersion::Exactly(0), vec![event(1002)], at(400)))
        .await
        .unwrap()
        .unwrap();
    let refused = tx.commit().await.unwrap();
    assert_eq!(refused, Err(AppendRejection::Moved { began: 300, now: 301 }));
    // A conflict inside ends it, with nothing written.
    let mut tx = log.begin().await.unwrap();
    let _ = tx.send(append("tenant", ExpectedVersion::Exactly(300), vec![event(1003)], at(401))).await;
    let _ = tx.send(append("tenant", ExpectedVersion::Exactly(7), vec![event(1004)], at(401))).await;
    let refused = tx.commit().await.unwrap();
    assert_eq!(refused, Err(AppendRejection::Conflict { stream: "tenant".into(), expected: 7, actual: 301 }));
    assert_eq!(log.head().await.unwrap().map(|h| h.seq), Some(301));
    assert_eq!(log.read_stream("tenant", 1).await.unwrap().len(), 300);
    assert_eq!(log.verify().await.unwrap().problem, None);
}

async fn a_snapshot_round_trips_and_one_altered_or_of_another_history_is_a_miss<S: Backend>() {
    let log = ten_records::<S>().await;
    let name = "aggregate/tenant";
    for seq in [4, 8] {
        log.save_snapshot(name, Snapshot { seq, state: vec![seq as u8; 100], parts: Vec::new() })
            .await
            .unwrap();
    }
    let staged =
        log.stage_snapshot(name, Snapshot { seq: 9, state: vec![9], parts: Vec::new() }).await.unwrap();
    assert_eq!(log.load_snapshot(name, 9).await.unwrap().map(|s| s.seq), Some(8), "staged is not seen");
    log.publish_snapshot(staged).await.unwrap();
    assert_eq!(
        log.load_snapshot(name, 9).await.unwrap(),
        Some(Snapshot { seq: 9, state: vec![9], parts: Vec::new() })
    );
    assert_eq!(
        log.load_snapshot(name, 7).await.unwrap(),
        Some(Snapshot { seq: 4, state: vec![4; 100], parts: Vec::new() })
    );
    assert_eq!(log.load_snapshot(name, 3).await.unwrap(), None);
    let names = log.snapshot_names().await.unwrap();
    assert_eq!(names, [(name.to_owned(), 4), (name.to_owned(), 8), (name.to_owned(), 9)]);
    assert!(
        log.save_snapshot(name, Snapshot { seq: 11, state: vec![], parts: Vec::new() }).await.is_err(),
        "past the head"
    );
    // A byte changed: a miss, and the load falls back to an older one.
    S::alter_cache(&log, name, 9, |bytes| bytes[5] ^= 1).await;
    assert_eq!(log.check_snapshot(name, 9).await.unwrap(), Some(Err(store::CacheMiss::Forged)));
    assert_eq!(log.load_snapshot(name, u64::MAX).await.unwrap().map(|s| s.seq), Some(8));
    log.remove_snapshots(name, 0..9).await.unwrap();
    assert_eq!(log.snapshot_names().await.unwrap(), [(name.to_owned(), 9)]);
    assert_eq!(log.check_snapshot(name, 4).await.unwrap(), None);
    // Authentic, but folded from another history than this log's.
    let other = S::fresh().await;
    for i in 1..=10u128 {
        other
            .append(append("tenant", ExpectedVersion::Any, vec![event(i + 50)], at(0)))
            .await
            .unwrap()
            .unwrap();
    }
    other.save_snapshot(name, Snapshot { seq: 5, state: vec![5], parts: Vec::new() }).await.unwrap();
    let theirs = other.snapshot_names().await.unwrap();
    assert_eq!(theirs, [(name.to_owned(), 5)]);
    assert_eq!(
        other.check_snapshot(name, 5).await.unwrap(),
        Some(Ok(Snapshot { seq: 5, state: vec![5], parts: Vec::new() }))
    );
}

async fn l3_verify_passes_then_names_a_record_whose_body_was_changed<S: Backend>() {
    let log = ten_records::<S>().await;
    let report = log.verify().await.unwrap();
    assert_eq!((report.records, report.problem), (10, None));
    assert_eq!(log.chain_break(1, 10).await.unwrap(), None);
    // "payload 6" -> "pAyload 6": same length, same shape.
    S::alter_body(&log, 6, |body| {
        let at = body.windows(9).position(|w| w == b"payload 6").unwrap();
        body[at + 1] = b'A';
    })
    .await;
    let problem = log.chain_break(3, 10).await.unwrap().expect("the change is caught");
    assert_eq!(problem.seq, 6);
    assert!(problem.what.contains("altered"), "{}", problem.what);
    assert_eq!(log.chain_break(7, 10).await.unwrap(), None, "the chain after it holds");
    let problem = log.verify().await.unwrap().problem.expect("verify names it");
    assert_eq!(problem.seq, 6);
    assert!(problem.what.contains("altered"), "{}", problem.what);
    // Found by verify: the log takes no more appends, through any handle,
    // opened before or after the finding.
    assert!(log.damage().is_some_and(|why| why.contains("record 6")));
    assert!(log.append(append("tenant", ExpectedVersion::Any, vec![event(11)], at(11))).await.is_err());
    let later = S::another(&log).await;
    assert!(later.damage().is_some_and(|why| why.contains("record 6")));
    assert!(later.append(append("tenant", ExpectedVersion::Any, vec![event(11)], at(11))).await.is_err());
}

async fn ten_writers_at_once_lose_nothing_and_leave_a_gapless_chain<S: Backend>() {
    let log = S::fresh().await;
    let mut writers = Vec::new();
    for w in 0..10u128 {
        let store = S::another(&log).await;
        writers.push(tokio::spawn(async move {
            for i in 0..10u128 {
                let events = vec![event(w * 100 + i * 2 + 1), event(w * 100 + i * 2 + 2)];
                let command = append(&format!("env/{w}"), ExpectedVersion::Any, events, at(0));
                store.append(command).await.unwrap().unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all = log.read_log(1, u64::MAX, usize::MAX).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let ids: HashSet<Uuid> = all.iter().map(|r| r.event_id).collect();
    assert_eq!(ids.len(), 200, "none lost");
    for w in 0..10 {
        let stream = log.read_stream(&format!("env/{w}"), 1).await.unwrap();
        assert_eq!(stream.iter().map(|r| r.version).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    }
    assert_eq!(log.verify().await.unwrap(), store::VerifyReport { records: 200, problem: None });
}

async fn a3_of_ten_racers_expecting_one_version_exactly_one_wins<S: Backend>() {
    let log = S::fresh().await;
    for i in 1..=6u128 {
        log.append(append("env/a", ExpectedVersion::Any, vec![event(i)], at(0))).await.unwrap().unwrap();
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
    let mut racers = Vec::new();
    for r in 0..10u128 {
        let (store, barrier) = (S::another(&log).await, barrier.clone());
        racers.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .append(append("env/a", ExpectedVersion::Exactly(6), vec![event(100 + r)], at(1)))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    let lost = AppendRejection::Conflict { stream: "env/a".into(), expected: 6, actual: 7 };
    assert!(outcomes.iter().filter_map(|o| o.as_ref().err()).all(|e| *e == lost), "{outcomes:?}");
    assert_eq!(log.stream_version("env/a").await.unwrap(), 7);
}

async fn l3_sealed_records_copied_into_an_empty_log_are_byte_for_byte_the_same<S: Backend>() {
    let log = S::fresh().await;
    for i in 1..=12u128 {
        let stream = if i % 3 == 0 { "audit" } else { "tenant" };
        log.append(append(stream, ExpectedVersion::Any, vec![event(i)], at(i as i64)))
            .await
            .unwrap()
            .unwrap();
    }
    let sealed = log.read_sealed(1, u64::MAX, usize::MAX).await.unwrap();
    let copy = S::fresh().await;
    assert_eq!(copy.append_sealed(sealed[..5].to_vec()).await.unwrap(), Ok(5));
    // Only as the next record.
    let skipped = copy.append_sealed(sealed[6..].to_vec()).await.unwrap();
    assert!(matches!(skipped, Err(AppendRejection::NotNext { seq: 7, .. })), "{skipped:?}");
    assert_eq!(copy.append_sealed(sealed[5..].to_vec()).await.unwrap(), Ok(12));
    assert_eq!(copy.read_sealed(1, u64::MAX, usize::MAX).await.unwrap(), sealed);
    assert_eq!(copy.verify().await.unwrap().problem, None);
    assert_eq!(copy.stream_version("audit").await.unwrap(), 4);
}
